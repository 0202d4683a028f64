#!/usr/bin/env bash
# Installs Autobahn|Testsuite (wstest) into a Python 2.7 virtualenv under target/autobahn/venv
# (cached between runs: a second run only checks it). Prints the wstest path on success.
#
# Needs CPython 2.7 (pyenv's versions/2.7.18, or python2.7 on PATH) and PyPI. Without an
# interpreter it writes the reason to target/autobahn/UNAVAILABLE and exits 3: tests/it/autobahn.rs
# then prints a loud SKIPPED line instead of failing (any other failure exits 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${WSRELAY_AUTOBAHN_VENV:-$PWD/target/autobahn/venv}"
WSTEST="$VENV/bin/wstest"
MARKER="$PWD/target/autobahn/UNAVAILABLE"
if [ -x "$WSTEST" ] && "$VENV/bin/python" -c 'import autobahntestsuite' >/dev/null 2>&1; then
    rm -f "$MARKER"
    echo "$WSTEST"
    exit 0
fi
PY2=""
for c in "${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18/bin/python" "$(command -v python2.7 || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then PY2="$c"; break; fi
done
if [ -z "$PY2" ]; then
    mkdir -p "$(dirname "$MARKER")"
    echo "no CPython 2.7 on this machine (looked for pyenv's versions/2.7.18 and python2.7); Autobahn|Testsuite's wstest needs it" > "$MARKER"
    echo "autobahn setup: $(cat "$MARKER")" >&2
    exit 3
fi
mkdir -p "$(dirname "$VENV")"
# virtualenv 20.22 dropped Python 2 support; it is installed next to the venv, not for the user.
BOOT="$(dirname "$VENV")/bootstrap"
rm -rf "$VENV" "$BOOT"
"$PY2" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$BOOT" 'virtualenv<20.22' >&2
PYTHONPATH="$BOOT" "$PY2" -m virtualenv --quiet "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'autobahntestsuite==25.10.1' >&2
"$VENV/bin/python" -c 'import autobahntestsuite' >&2
rm -f "$MARKER"
echo "$WSTEST"
