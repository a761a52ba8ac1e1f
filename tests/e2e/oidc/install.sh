#!/usr/bin/env bash
# Installs the test OpenID Provider (oidc-provider from npm, pinned by package-lock.json) into
# "$1/oidc-provider", idempotently: a no-op when the installed lock file matches.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest="$1/oidc-provider"
mkdir -p "$dest"
if [ -d "$dest/node_modules/oidc-provider" ] && cmp -s "$here/package-lock.json" "$dest/package-lock.json"; then
    exit 0
fi
command -v npm >/dev/null || { echo "[e2e setup] npm is missing (install Node.js 20 and npm)"; exit 1; }
cp "$here/package.json" "$here/package-lock.json" "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
echo "[e2e setup] oidc-provider installed in $dest"
