#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30), seeded with the committed seeds
# (fuzz/corpus/<target>/seed-*), the Eureka fixtures and tests/corpus/. Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`); without them it says so and exits 0:
# tests/it/props.rs runs the same entry points with proptest on stable in every `cargo test`.
# A crash fails the run; its input is in fuzz/artifacts/<target>/ and belongs in
# tests/corpus/<registry|path|config>/ as a regression input once fixed.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-30}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: SKIPPED: no nightly toolchain (proptest in tests/it/props.rs covers the same targets)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: cargo-fuzz is not installed (proptest in tests/it/props.rs covers the same targets)"
    exit 0
fi
cargo +nightly fuzz build -O
for target in eureka_xml eureka_json route_lookup config handshake; do
    case "$target" in
        eureka_xml|eureka_json) seeds=(../tests/fixtures/eureka ../tests/corpus/registry) ;;
        route_lookup) seeds=(../tests/corpus/path) ;;
        config) seeds=(../examples ../tests/corpus/config) ;;
        *) seeds=() ;;
    esac
    mkdir -p "corpus/$target"
    echo "== fuzz $target (${SECONDS_EACH}s)"
    cargo +nightly fuzz run -O "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+.*DONE|Done|INFO: seed|==[0-9]+==|SUMMARY|stat::number_of_executed_units|stat::peak_rss_mb|.*(panicked|Crash|crash-|ERROR|deadly))' || true
    if ls "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $target found a failing input:"; ls -l "artifacts/$target"
        exit 1
    fi
done
echo "fuzz: all targets ran ${SECONDS_EACH}s without a crash"
