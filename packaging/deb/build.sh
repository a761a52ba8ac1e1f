#!/usr/bin/env bash
# Builds a Debian package of appliance with dpkg-deb (no other tool needed):
#   /usr/bin/appliance                          the static binary
#   /lib/systemd/system/appliance.service       the hardened unit (`appliance config systemd`)
#   /usr/share/doc/appliance/README.md
# and maintainer scripts that create the `appliance` system user, /var/lib/appliance (0700) and,
# on first install only, /etc/appliance/config.yaml with fresh secrets (`config generate`); an
# upgrade never touches the config, and removing the package keeps the config and the data
# (purging removes the config, never /var/lib/appliance).
#
#   bash packaging/deb/build.sh [--binary PATH] [--version VERSION] [--out DIR] [--compression xz|gzip|none]
#
# Without --binary it builds the release binary first (cargo build --release --locked).
# Prints the path of the .deb.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
binary="" version="" out="$repo/target/deb" compression=xz
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --compression) compression=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
version=${version:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)}
if [ -z "$binary" ]; then
    (cd "$repo" && cargo build --release --locked >&2)
    binary="$repo/target/x86_64-unknown-linux-gnu/release/appliance"
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }

mkdir -p "$out"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/bin/appliance"
install -d "$root/lib/systemd/system" "$root/usr/share/doc/appliance" "$root/DEBIAN"
"$binary" --config /etc/appliance/config.yaml config systemd --binary /usr/bin/appliance --user appliance \
    > "$root/lib/systemd/system/appliance.service"
install -m 0644 "$repo/README.md" "$root/usr/share/doc/appliance/README.md"

size_kib=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: appliance
Version: $version
Architecture: amd64
Maintainer: appliance maintainers <root@localhost>
Installed-Size: $size_kib
Depends: passwd
Section: net
Priority: optional
Homepage: https://github.com/element-hq/matrix-authentication-service
Description: Matrix authentication service for small homeservers
 An OAuth 2.0 / OpenID Connect provider that Synapse delegates authentication
 to, compatible with matrix-authentication-service: one static binary, one
 SQLite file under /var/lib/appliance.
CONTROL

cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    getent group appliance >/dev/null || groupadd --system appliance
    getent passwd appliance >/dev/null ||
        useradd --system --gid appliance --home-dir /var/lib/appliance --no-create-home \
            --shell /usr/sbin/nologin --comment "appliance Matrix authentication service" appliance
    install -d -o appliance -g appliance -m 0700 /var/lib/appliance
    install -d -o root -g appliance -m 0750 /etc/appliance
    # First install only: a config with fresh secrets. Never overwritten on upgrade.
    if [ ! -e /etc/appliance/config.yaml ]; then
        /usr/bin/appliance config generate --output /etc/appliance/config.yaml 2>/dev/null
        chgrp appliance /etc/appliance/config.yaml
        chmod 0640 /etc/appliance/config.yaml
        echo "appliance: wrote /etc/appliance/config.yaml with fresh secrets; set http.public_base and matrix.*"
        echo "  (or regenerate it from Synapse's settings: appliance config generate --synapse-config homeserver.yaml),"
        echo "  then: systemctl enable --now appliance && appliance -c /etc/appliance/config.yaml doctor"
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        # An upgrade restarts a running service on the new binary.
        if [ -n "$2" ] && systemctl is-active --quiet appliance; then systemctl restart appliance || true; fi
    fi
fi
exit 0
SCRIPT

cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl disable --now appliance >/dev/null 2>&1 || true
fi
exit 0
SCRIPT

cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
if [ "$1" = purge ]; then
    rm -f /etc/appliance/config.yaml
    rmdir /etc/appliance 2>/dev/null || true
    # The database holds every account: purging the package never deletes it.
    if [ -d /var/lib/appliance ]; then
        echo "appliance: kept /var/lib/appliance (the database); delete it yourself if you mean to"
    fi
fi
exit 0
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb="$out/appliance_${version}_amd64.deb"
dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb" >&2
echo "$deb"
