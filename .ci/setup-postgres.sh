#!/usr/bin/env bash
# Install the PostgreSQL server (Debian packages) for the multi-worker tuning test (tests/test_tune.py).
# Idempotent and quiet: does nothing when initdb is already there. Needs root (or sudo) and apt-get.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The Debian package starts a cluster as a service; the tests start their own server in a temp dir.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null
