#!/usr/bin/env bash
# What permessage-deflate costs wsrelay (issue 17): idle memory per session and CPU per message,
# for deflate off, the default (no context takeover) and `deflate.context_takeover = true`.
# The clients are bench/deflate.py (Python `websockets`); see BENCHMARKS.md, "permessage-deflate".
#
#   bash bench/deflate.sh            # full run (~10 min on 2 cores after the build)
#   QUICK=1 bash bench/deflate.sh    # smoke run: 200 sessions, 1 round, 2 s runs
#
# Environment (defaults in brackets; QUICK=1 changes the ones marked *):
#   SESSIONS [2000, *200]   sessions per hold (the client, the relay and a Python backend each
#                           hold one or two descriptors per session)
#   REPEATS [3, *1]         rounds; every case once per round
#   DURATION [5, *2]        measured seconds per throughput run (after 1 s unmeasured)
#   LOADS ["hold throughput"]
#   BACKENDS ["echo pyecho"]   services behind wsrelay for the hold: `echo` is wsrelay-bench's
#                           echo backend (no deflate: only the client leg is compressed),
#                           `pyecho` is tests/autobahn/pmd.py's websockets echo server with
#                           deflate (both legs compressed). The throughput load uses `echo`.
#   PIN [1], RELAY_CPU [0], LOAD_CPU [1]   taskset: wsrelay on RELAY_CPU, clients and backends on
#                           LOAD_CPU (skipped where taskset fails)
#   PORT_BASE [20200]       first of 3 loopback TCP ports used
#   OUT [target/bench/deflate-DATE], SKIP_BUILD [0], WSRELAY, BENCH, PYTHON [python3]
#
# Everything listens on 127.0.0.1 only; every process this script starts is stopped by PID on
# exit (trap).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  SESSIONS=${SESSIONS:-200}; REPEATS=${REPEATS:-1}; DURATION=${DURATION:-2}
else
  SESSIONS=${SESSIONS:-2000}; REPEATS=${REPEATS:-3}; DURATION=${DURATION:-5}
fi
LOADS=${LOADS:-hold throughput}
BACKENDS=${BACKENDS:-echo pyecho}
PIN=${PIN:-1}
RELAY_CPU=${RELAY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-20200}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$ROOT/target/bench/deflate-$(date +%Y%m%d-%H%M%S)}
SKIP_BUILD=${SKIP_BUILD:-0}
ECHO_PORT=$PORT_BASE
WSR_PORT=$((PORT_BASE + 1))
WSR_OFF_PORT=$((PORT_BASE + 2))
GW_PATH=/ws/v1/discoverableclient/echo

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/deflate.sh: %s\n' "$*" >&2; exit 1; }

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() { # TERM, then KILL after 5 s; forgets the PID
  local pid=$1 keep=() p
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

wait_port() { # port pid name
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start; see $OUT/logs/$3.log"
    sleep 0.1
  done
  die "$3 does not listen on port $1; see $OUT/logs/$3.log"
}

HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=1048576
ulimit -n "$HARD" 2>/dev/null || true
(((SESSIONS * 2 + 200) <= $(ulimit -n))) || die "open-file limit $(ulimit -n) is too low for $SESSIONS sessions"

"$PYTHON" -c 'import websockets.asyncio.client' 2>/dev/null ||
  die "needs the Python websockets library: python3 -m pip install 'websockets==17.4' (scripts/test.sh does)"

if [[ $SKIP_BUILD != 1 ]]; then
  log "building wsrelay and wsrelay-bench (release)"
  cargo build --release --locked -p wsrelay -p wsrelay-bench
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WSRELAY=${WSRELAY:-$TARGET_DIR/release/wsrelay}
BENCH=${BENCH:-$TARGET_DIR/release/wsrelay-bench}
[[ -x $WSRELAY && -x $BENCH ]] || die "missing $WSRELAY or $BENCH (build with cargo build --release)"

mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
for p in $ECHO_PORT $WSR_PORT $WSR_OFF_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is already in use; set PORT_BASE"; fi
done

PIN_RELAY=()
PIN_LOAD=()
if [[ $PIN == 1 ]] && (($(nproc) >= 2)) && taskset -c "$RELAY_CPU" true 2>/dev/null && taskset -c "$LOAD_CPU" true 2>/dev/null; then
  PIN_RELAY=(taskset -c "$RELAY_CPU")
  PIN_LOAD=(taskset -c "$LOAD_CPU")
  PINNING="pinned: wsrelay on CPU $RELAY_CPU, clients and backends on CPU $LOAD_CPU"
else
  PINNING="not pinned"
fi

# --- backends -----------------------------------------------------------------------------
"${PIN_LOAD[@]}" "$BENCH" echo --listen "127.0.0.1:$ECHO_PORT" >"$OUT/logs/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_port "$ECHO_PORT" "$ECHO_PID" echo
PYECHO_PORT=""
PYECHO_PID=""
if [[ " $BACKENDS " == *" pyecho "* ]]; then
  # tests/autobahn/pmd.py picks a free port itself and prints it.
  "${PIN_LOAD[@]}" "$PYTHON" tests/autobahn/pmd.py server >"$OUT/pyecho.port" 2>"$OUT/logs/pyecho.log" &
  PYECHO_PID=$!
  PIDS+=("$PYECHO_PID")
  for _ in $(seq 100); do
    PYECHO_PORT=$(head -n1 "$OUT/pyecho.port")
    [[ -n $PYECHO_PORT ]] && break
    kill -0 "$PYECHO_PID" 2>/dev/null || die "pyecho exited at start; see $OUT/logs/pyecho.log"
    sleep 0.1
  done
  [[ -n $PYECHO_PORT ]] || die "pyecho printed no port"
fi

backend_port() { case $1 in echo) echo "$ECHO_PORT" ;; pyecho) echo "$PYECHO_PORT" ;; esac; }

# --- wsrelay: one config per (deflate mode, backend) ----------------------------------------
write_config() { # file port backend mode(off|default|takeover)
  sed -e "s/10012/$(backend_port "$3")/g" -e 's#<hostName>localhost</hostName>#<hostName>127.0.0.1</hostName>#' \
    examples/registry.xml >"$OUT/registry-$3.xml"
  {
    printf '[listen]\naddress = "127.0.0.1:%s"\n\n[tls]\nenabled = false\n\n' "$2"
    printf '[registry]\nfile = "%s"\nrefresh_interval = "1h"\n\n[log]\nlevel = "warn"\n' "$OUT/registry-$3.xml"
    case $4 in
      off) printf '\n[deflate]\nenabled = false\n' ;;
      takeover) printf '\n[deflate]\ncontext_takeover = true\n' ;;
    esac
  } >"$1"
}
WSR_PID=""
start_wsrelay() { # config port name
  TOKIO_WORKER_THREADS=1 "${PIN_RELAY[@]}" "$WSRELAY" --config "$1" >>"$OUT/logs/$3.log" 2>&1 &
  WSR_PID=$!
  PIDS+=("$WSR_PID")
  wait_port "$2" "$WSR_PID" "$3"
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && echo ' (with uncommitted changes)')"
  echo "versions: $("$WSRELAY" --version 2>/dev/null | head -n1), Python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'), websockets $("$PYTHON" -c 'import websockets; print(websockets.__version__)')"
  echo "settings: $PINNING; TOKIO_WORKER_THREADS=1; hold $SESSIONS sessions; throughput ${DURATION}s runs; $REPEATS rounds"
} >"$OUT/header.txt"
cat "$OUT/header.txt" >&2

run_py() { # args... ; appends the JSON line to results
  local line
  if line=$("${PIN_LOAD[@]}" "$PYTHON" bench/deflate.py "$@" 2>>"$OUT/logs/client.log"); then
    echo "$line" >>"$RESULTS"
    tail -n 1 "$OUT/logs/client.log" >&2
  else
    printf 'bench/deflate.sh: deflate.py %s failed:\n' "$*" >&2
    tail -n 3 "$OUT/logs/client.log" >&2
  fi
}

# --- hold: a fresh wsrelay per run (an allocator keeps what a previous hold freed) -----------
# Cases: deflate off (client offers, wsrelay declines); default with a client that offers
# nothing; default; context takeover.
HOLD_CASES="off:deflate default:none default:deflate takeover:deflate"
if [[ " $LOADS " == *" hold "* ]]; then
  for ((r = 0; r < REPEATS; r++)); do
    for b in $BACKENDS; do
      for c in $HOLD_CASES; do
        mode=${c%%:*} client=${c##*:}
        write_config "$OUT/wsrelay-$mode-$b.toml" "$WSR_PORT" "$b" "$mode"
        start_wsrelay "$OUT/wsrelay-$mode-$b.toml" "$WSR_PORT" "wsrelay-$mode-$b"
        log "hold round $((r + 1)): deflate $mode, backend $b, client offers $client"
        run_py hold --url "ws://127.0.0.1:$WSR_PORT$GW_PATH" --watch-pid "$WSR_PID" \
          --sessions "$SESSIONS" --compression "$client" --label "$mode / $b / client $client"
        stop_pid "$WSR_PID"
        sleep 1
      done
    done
  done
fi

# --- throughput: one wsrelay with deflate (default), one without; rounds alternate ----------
if [[ " $LOADS " == *" throughput "* ]]; then
  write_config "$OUT/wsrelay-tp-on.toml" "$WSR_PORT" echo default
  write_config "$OUT/wsrelay-tp-off.toml" "$WSR_OFF_PORT" echo off
  start_wsrelay "$OUT/wsrelay-tp-on.toml" "$WSR_PORT" wsrelay-tp-on
  ON_PID=$WSR_PID
  start_wsrelay "$OUT/wsrelay-tp-off.toml" "$WSR_OFF_PORT" wsrelay-tp-off
  OFF_PID=$WSR_PID
  for ((r = 0; r < REPEATS; r++)); do
    for size in 4096 65536; do
      for mode in on off; do
        if [[ $mode == on ]]; then port=$WSR_PORT pid=$ON_PID; else port=$WSR_OFF_PORT pid=$OFF_PID; fi
        log "throughput round $((r + 1)): $size B, deflate $mode"
        run_py throughput --url "ws://127.0.0.1:$port$GW_PATH" --watch-pid "$pid" \
          --backend-pid "$ECHO_PID" --size "$size" --duration "$DURATION" --label "deflate $mode"
      done
    done
  done
fi

{
  cat "$OUT/header.txt"
  echo
  "$PYTHON" bench/deflate.py report "$RESULTS"
} >"$OUT/report.md"
echo
cat "$OUT/report.md"
log "results: $RESULTS; report: $OUT/report.md; logs: $OUT/logs"
