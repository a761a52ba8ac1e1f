#!/usr/bin/env bash
# Installs what the real-Synapse end-to-end tests need, idempotently:
#   ${APPLIANCE_E2E_DIR:-<repo>/target/e2e}/synapse-1.163.2/   venv: matrix-synapse 1.163.2 (modern, matrix_authentication_service)
#   ${APPLIANCE_E2E_DIR:-<repo>/target/e2e}/synapse-1.156.0/   venv: matrix-synapse 1.156.0 (legacy, experimental_features.msc3861)
# each with matrix-nio and requests (the modern one also with aiosmtpd, the tests' SMTP server),
# and, from Debian, every system program the tests run (the `system_programs` table below:
# nginx, caddy, chromium, chromedriver, …; tests/it/tooling.rs checks that the table names every
# program the tests start). Installing Debian packages needs root (or sudo).
# Debian's packages are installed first: the venvs need python3-venv.
# PostgreSQL + psycopg2 for the syn2mas test come from tests/e2e/postgres.sh.
# Safe to run concurrently (flock on <e2e dir>/setup.lock); a no-op run takes under 2 s.
set -euo pipefail

start_ns=$(date +%s%N)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
e2e=${APPLIANCE_E2E_DIR:-$repo/target/e2e}
python=${APPLIANCE_E2E_PYTHON:-python3}
mkdir -p "$e2e"
e2e=$(cd "$e2e" && pwd)

# Synapse derives its version string from `git describe` when its package sits inside a git
# checkout (as it does under <repo>/target): keep git from looking above the e2e dir.
export GIT_CEILING_DIRECTORIES=$e2e

log() { echo "[e2e setup] $*"; }

exec 9>"$e2e/setup.lock"
if ! flock -n 9; then
    log "another setup is running; waiting for $e2e/setup.lock"
    flock 9
fi

# System programs the tests run, as "program Debian-package" (one a line). tests/it/tooling.rs
# scans tests/ for every program started there and fails when one is missing from this table.
system_programs=(
    "bash bash"
    "sh dash"
    "kill procps"
    "python3 python3"
    "nginx nginx-light"
    "caddy caddy"
    "chromium chromium"
    "chromedriver chromium-driver"
    "dpkg-deb dpkg"
    "dpkg dpkg"
    "dpkg-query dpkg"
    "strip binutils"
    "getent libc-bin"
    "node nodejs"
    "systemd-analyze systemd"
    "mount mount"
    "umount mount"
)
missing=()
for entry in "${system_programs[@]}"; do
    read -r program package <<<"$entry"
    command -v "$program" >/dev/null 2>&1 || missing+=("$package")
done
# python3 -m venv needs ensurepip, which Debian ships apart from python3.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -eq 0 ]; then
    log "system programs: ok"
else
    log "system programs: installing ${missing[*]} from Debian"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to apt-get install ${missing[*]}"; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    # --no-install-recommends: chromium's recommends pull in a desktop's worth of packages.
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    for entry in "${system_programs[@]}"; do
        read -r program package <<<"$entry"
        command -v "$program" >/dev/null 2>&1 || { log "$program: still not on PATH after installing $package"; exit 1; }
    done
fi

# venv_ok DIR VERSION: true when DIR is a venv where `import synapse` works, matrix-synapse is
# VERSION, and nio, requests and authlib are installed.
venv_ok() {
    [ -x "$1/bin/python" ] || return 1
    local got
    got=$("$1/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata, importlib.util, synapse  # the import must work
missing = [m for m in ("nio", "requests", "authlib") if importlib.util.find_spec(m) is None]
# Not synapse.__version__: inside a git checkout it may read "1.163.2 (b=main,abc123)".
print(importlib.metadata.version("matrix-synapse") if not missing else "missing:" + ",".join(missing))
PY
) || return 1
    [ "$got" = "$2" ]
}

ensure_venv() {
    local version=$1 dir="$e2e/synapse-$1"
    log "synapse $version: installing into $dir"
    local t0=$SECONDS
    rm -rf "$dir"
    # A half-made venv must not look finished to the next run.
    trap 'rm -rf "$dir"' ERR
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
    # [oidc] pulls Authlib, which the legacy msc3861 mode needs.
    "$dir/bin/python" -m pip install --disable-pip-version-check -q \
        "matrix-synapse[oidc]==$version" matrix-nio requests
    trap - ERR
    venv_ok "$dir" "$version" || { log "synapse $version: installed, but the check still fails"; exit 1; }
    log "synapse $version: installed in $((SECONDS - t0)) s"
}

# `import synapse` alone takes about 1 s, so both venvs are checked in parallel first.
versions=(1.163.2 1.156.0)
declare -A ready=()
pids=()
for v in "${versions[@]}"; do venv_ok "$e2e/synapse-$v" "$v" & pids+=($!); done
for i in "${!versions[@]}"; do
    if wait "${pids[$i]}"; then ready[${versions[$i]}]=1; fi
done
for v in "${versions[@]}"; do
    if [ -n "${ready[$v]:-}" ]; then log "synapse $v: ok ($e2e/synapse-$v)"; else ensure_venv "$v"; fi
done

# aiosmtpd: the local SMTP server that catches the emails of the tests (in the modern venv).
smtp_venv="$e2e/synapse-1.163.2"
if "$smtp_venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    log "aiosmtpd: ok"
else
    log "aiosmtpd: installing into $smtp_venv"
    "$smtp_venv/bin/python" -m pip install --disable-pip-version-check -q "aiosmtpd==1.4.6"
fi

bash "$repo/tests/e2e/postgres.sh" "$e2e"

bash "$repo/tests/e2e/webclient.sh"  # the cross-origin test web client (matrix-js-sdk bundle)
bash "$repo/tests/e2e/oidc/install.sh" "$e2e" # the OpenID Provider of the upstream sign-in tests

log "done in $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"
