#!/usr/bin/env bash
# The whole Autobahn|Testsuite run, including the slow 9.* cases (messages up to 16 MiB), in
# both directions over ws and wss, on a release build: for the bench script, not for CI
# (.ci/run runs tests/it/autobahn.rs without 9.*). Prints the per-agent summary lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/autobahn/setup.sh >/dev/null
WSRELAY_AUTOBAHN_FULL=1 cargo test --release --locked --test it autobahn:: -- --nocapture --test-threads 1 2>&1 |
    grep -E '^(autobahn |test |test result)'
