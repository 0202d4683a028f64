#!/usr/bin/env bash
# The README's test command. Installs what the tests need, each step idempotent and cached
# (a second run only checks), then runs `cargo test --locked --workspace` with any arguments given:
#
#   - gcc and make (jemalloc, the agent's allocator, is built from C sources)       apt
#   - Autobahn|Testsuite's wstest in a Python 2.7 virtualenv, target/autobahn/venv  PyPI
#   - py-eureka-client and websockets 17.4 (pip), eureka-js-client@4.5.0 in target/interop-js   PyPI, npm
#   - headless Chromium (Debian's chromium) and playwright-core@1.65.1 beside it      apt, npm
#   - Prometheus 2.42 and promtool (Debian's prometheus; only run by the tests)       apt
#   - Java 17+ and Maven if missing, then the interop jars (interop/*/target/*.jar):
#     the Spring Cloud Netflix Eureka server and the Spring Boot WebSocket service  Maven Central
#
# Runs from any directory, as root on a fresh machine (apt-get is used only for what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '== %s\n' "$*"; }
apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

step "setup: C compiler and make"
if ! command -v make >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
    apt_install make gcc
fi

step "setup: Autobahn wstest"
rc=0
bash scripts/autobahn/setup.sh >/dev/null || rc=$?
case $rc in
    0) ;;
    3) echo "   no CPython 2.7: tests/it/autobahn.rs will print SKIPPED (see target/autobahn/UNAVAILABLE)" ;;
    *) echo "autobahn setup failed ($rc)" >&2; exit "$rc" ;;
esac

step "setup: Eureka interop clients (py-eureka-client, eureka-js-client@4.5.0)"
if ! python3 -c 'import py_eureka_client' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore py-eureka-client
fi
# websockets: the permessage-deflate peer of tests/it/autobahn.rs (tests/autobahn/pmd.py)
if ! python3 -c 'import websockets.asyncio.server' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'websockets==17.4'
fi
mkdir -p target/interop-js
if [ ! -f target/interop-js/node_modules/eureka-js-client/package.json ]; then
    [ -f target/interop-js/package.json ] || echo '{"name":"wsrelay-interop","private":true}' > target/interop-js/package.json
    (cd target/interop-js && npm install --no-audit --no-fund --silent eureka-js-client@4.5.0)
fi

step "setup: headless Chromium and playwright-core@1.65.1"
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi
if [ ! -f target/interop-js/node_modules/playwright-core/package.json ]; then
    (cd target/interop-js && npm install --no-audit --no-fund --silent playwright-core@1.65.1)
fi

step "setup: Prometheus and promtool (Debian's prometheus)"
if [ ! -x /usr/bin/promtool ] || [ ! -x /usr/bin/prometheus ]; then
    apt_install prometheus
fi

step "setup: interop jars (real Eureka server, Spring WebSocket service)"
if ! command -v java >/dev/null 2>&1; then
    apt_install openjdk-17-jdk-headless
fi
if ! command -v mvn >/dev/null 2>&1; then
    apt_install maven
fi
stale=0
for m in eureka-server ws-service; do
    jar="interop/$m/target/$m.jar"
    if [ ! -f "$jar" ] || [ -n "$(find interop/pom.xml "interop/$m" -path '*/target' -prune -o -type f -newer "$jar" -print -quit)" ]; then
        stale=1
    fi
done
if [ "$stale" = 1 ]; then
    start=$(date +%s)
    # the test peers only (interop/scg-gateway is a benchmark target, built by bench/run.sh)
    mvn -B -q -f interop/pom.xml package -DskipTests -pl eureka-server,ws-service -am
    echo "   built in $(( $(date +%s) - start )) s"
fi

step "tests (cargo test --locked --workspace $*)"
exec cargo test --locked --workspace "$@"
