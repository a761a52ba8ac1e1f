#!/usr/bin/env bash
# PostgreSQL for the syn2mas end-to-end test (Synapse on PostgreSQL), idempotently: Debian's
# `postgresql` (the test runs its own throwaway cluster with initdb as the `postgres` user) and
# psycopg2 in the Synapse 1.163.2 venv. Called by setup.sh, under its lock.
set -euo pipefail
e2e=${1:?usage: postgres.sh E2E_DIR}
log() { echo "[e2e setup] $*"; }

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then
    log "postgresql: ok ($(ls -d /usr/lib/postgresql/*/bin | tail -1))"
else
    log "postgresql: installing from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q postgresql
    # The test starts its own cluster; the packaged one need not run.
fi

venv="$e2e/synapse-1.163.2"
if "$venv/bin/python" -c 'import psycopg2' 2>/dev/null; then
    log "psycopg2: ok"
else
    log "psycopg2: installing into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "psycopg2-binary==2.9.10"
fi
