#!/usr/bin/env bash
# Checks systemd/wsrelay.service with `systemd-analyze verify` (ExecStart pointed at the built
# binary, since verify requires it to exist) and prints its `systemd-analyze security` exposure.
# Usage: systemd/verify.sh [path-to-wsrelay-binary]   (default: target/debug/wsrelay)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/wsrelay}")"
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze not found: skipping the unit check" >&2
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/wsrelay#${bin}#" systemd/wsrelay.service > "$tmp/wsrelay.service"
systemd-analyze verify "$tmp/wsrelay.service"
echo "systemd-analyze verify: ok"
systemd-analyze security --offline=true "$tmp/wsrelay.service" | grep -i "overall exposure" || true
