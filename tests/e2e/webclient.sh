#!/usr/bin/env bash
# Builds the cross-origin test web client (tests/e2e/webclient/: matrix-js-sdk's OIDC helpers and
# oidc-client-ts, bundled with esbuild) into ${APPLIANCE_E2E_DIR:-<repo>/target/e2e}/webclient/dist/
# (index.html + bundle.js), which tests/it/webclient.rs serves on its own origin. Idempotent:
# node_modules are installed once per package-lock.json (npm ci, no install scripts), and the
# bundle is rebuilt only when its sources change. Needs node and npm (npm registry access the
# first time; node and npm come from Debian when missing). Called from setup.sh, under its lock.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src=$repo/tests/e2e/webclient
e2e=${APPLIANCE_E2E_DIR:-$repo/target/e2e}
mkdir -p "$e2e/webclient"
out=$(cd "$e2e/webclient" && pwd)
log() { echo "[e2e setup] $*"; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "webclient: installing nodejs and npm from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends nodejs npm
fi

lock_sum=$(sha256sum "$src/package-lock.json" | cut -c1-16)
if [ "$(cat "$out/node_modules.sum" 2>/dev/null)" != "$lock_sum" ]; then
    log "webclient: npm ci into $out"
    t0=$SECONDS
    rm -rf "$out/node_modules" "$out/node_modules.sum"
    cp "$src/package.json" "$src/package-lock.json" "$out/"
    # esbuild's install script only checks its binary, which comes from @esbuild/<platform>.
    (cd "$out" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$out/node_modules.sum"
    log "webclient: installed in $((SECONDS - t0)) s"
fi

src_sum=$(cat "$src/package-lock.json" "$src/index.html" "$src"/src/*.js | sha256sum | cut -c1-16)
if [ "$(cat "$out/dist.sum" 2>/dev/null)" != "$src_sum" ] || [ ! -s "$out/dist/bundle.js" ]; then
    rm -rf "$out/dist.new" && mkdir -p "$out/dist.new"
    # Bundled from the sources in the repo, resolving packages from the cached node_modules.
    NODE_PATH="$out/node_modules" "$out/node_modules/.bin/esbuild" "$src/src/page.js" --bundle --format=iife \
        --target=chrome110 --outfile="$out/dist.new/bundle.js" --log-level=warning \
        --resolve-extensions=.js,.mjs,.ts --main-fields=browser,module,main
    cp "$src/index.html" "$out/dist.new/"
    rm -rf "$out/dist" && mv "$out/dist.new" "$out/dist"
    echo "$src_sum" >"$out/dist.sum"
    log "webclient: bundled into $out/dist"
else
    log "webclient: ok ($out/dist)"
fi
