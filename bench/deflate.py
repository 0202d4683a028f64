"""permessage-deflate loads for bench/deflate.sh (issue 17): clients only, with the Python
`websockets` library (17.4, installed by scripts/test.sh). It starts no server.

    python3 bench/deflate.py hold --url URL --watch-pid PID [--sessions 2000] [--compression deflate|none]
        Opens SESSIONS sessions (64 handshakes at a time), reads the relay's VmRSS with every
        session open and idle, then sends one ~1 KiB JSON-like text message on each and reads
        its echo (so every leg has compressed and inflated once), lets them idle, reads VmRSS
        again, closes them all and reads it once more after --after-close seconds.
    python3 bench/deflate.py throughput --url URL --watch-pid PID [--size 4096] [--duration 5]
        One session, closed loop: send one compressible JSON-like text message of SIZE bytes,
        wait for its echo, repeat. Reports messages/s, the relay's CPU time per message
        (/proc/PID/stat utime + stime) and the client's own CPU use (to show which side is the
        bottleneck).
    python3 bench/deflate.py report RESULTS.jsonl
        Medians of the runs above as Markdown tables.

Each load prints one JSON line on stdout. `--compression deflate` is the library's default
client offer (`permessage-deflate; client_max_window_bits`); `none` offers no extension.
"""
import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import zlib

from websockets.asyncio.client import connect

CLK_TCK = os.sysconf("SC_CLK_TCK")
WORDS = ["quote", "trade", "order", "fill", "cancel", "position", "account", "ledger"]
SYMBOLS = ["IBM", "MSFT", "AAPL", "ORCL", "SAP", "NVDA", "AMZN", "INTC", "CSCO", "ACN"]


def message(seed: int, size: int) -> str:
    """A JSON-like text message of at least `size` bytes: an envelope and a list of records
    whose values vary (seeded), the way a trading or monitoring feed looks."""
    rnd = random.Random(seed)
    records, text = [], ""
    while True:
        records.append({
            "seq": rnd.randrange(1_000_000),
            "type": rnd.choice(WORDS),
            "symbol": rnd.choice(SYMBOLS),
            "price": round(rnd.uniform(10, 500), 2),
            "qty": rnd.randrange(1, 1000),
            "side": rnd.choice(["buy", "sell"]),
            "ts": f"2026-05-{rnd.randrange(1, 29):02d}T{rnd.randrange(24):02d}:"
                  f"{rnd.randrange(60):02d}:{rnd.randrange(60):02d}.{rnd.randrange(1000):03d}Z",
        })
        text = json.dumps({"session": seed, "channel": "market-data", "records": records})
        if len(text) >= size:
            return text


def raw_deflate_len(text: str) -> int:
    """What zlib level 1 with a fresh 2^15 context makes of it (the relay's default), minus
    the 4-byte sync-flush tail: an estimate of the compressed payload on the wire."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    return len(c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH)) - 4


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def opts(args):
    return dict(
        compression=None if args.compression == "none" else "deflate",
        max_size=None,
        ping_interval=None,  # idle means idle: no keepalive pings from the client
        open_timeout=60,
        close_timeout=10,
    )


def negotiated(ws) -> str:
    ext = ws.response.headers.get("Sec-WebSocket-Extensions")
    return ext or "none"


async def prime(args):
    """One session, one echo, closed: the relay's per-process and per-thread state (its
    thread-local zlib contexts among them) exists before the baseline is read."""
    async with connect(args.url, **opts(args)) as ws:
        m = message(-1, args.size)
        await ws.send(m)
        if await ws.recv() != m:
            raise RuntimeError("prime: the echo differs")


async def hold(args):
    await prime(args)
    await asyncio.sleep(args.settle)
    pid, n = args.watch_pid, args.sessions
    rss = {"before": rss_kib(pid)}
    sem = asyncio.Semaphore(64)
    t0 = time.monotonic()

    async def open_one(i):
        async with sem:
            return await connect(args.url, **opts(args))

    conns = await asyncio.gather(*(open_one(i) for i in range(n)))
    open_s = time.monotonic() - t0
    await asyncio.sleep(args.settle)
    rss["open"] = rss_kib(pid)

    msgs = [message(i, args.size) for i in range(n)]

    async def echo_one(i):
        async with sem:
            await conns[i].send(msgs[i])
            return await conns[i].recv() == msgs[i]

    ok = sum(await asyncio.gather(*(echo_one(i) for i in range(n))))
    await asyncio.sleep(args.settle)
    rss["echoed"] = rss_kib(pid)

    exts: dict[str, int] = {}
    for ws in conns:
        exts[negotiated(ws)] = exts.get(negotiated(ws), 0) + 1

    async def close_one(ws):
        async with sem:
            await ws.close()

    await asyncio.gather(*(close_one(ws) for ws in conns))
    await asyncio.sleep(args.after_close)
    rss["closed"] = rss_kib(pid)
    sizes = [len(m) for m in msgs]
    return {
        "load": "hold", "label": args.label, "compression": args.compression,
        "sessions": n, "echoed": ok, "extensions": exts,
        "msg_bytes": round(statistics.mean(sizes)),
        "msg_deflated_bytes_est": round(statistics.mean(raw_deflate_len(m) for m in msgs[:200])),
        "open_s": round(open_s, 2), "rss_kib": rss,
        "per_session_kib": {
            "open": round((rss["open"] - rss["before"]) / n, 2),
            "echoed": round((rss["echoed"] - rss["before"]) / n, 2),
        },
        "closed_vs_before_pct": round(100 * (rss["closed"] - rss["before"]) / rss["before"], 1),
    }


async def throughput(args):
    await prime(args)
    msgs = [message(1000 + i, args.size) for i in range(16)]
    pid = args.watch_pid
    async with connect(args.url, **opts(args)) as ws:
        ext = negotiated(ws)
        end_warm = time.monotonic() + args.warmup
        i = 0
        while time.monotonic() < end_warm:
            m = msgs[i % 16]
            await ws.send(m)
            if await ws.recv() != m:
                raise RuntimeError("the echo differs")
            i += 1
        relay0, back0 = cpu_s(pid), cpu_s(args.backend_pid) if args.backend_pid else 0.0
        me0, t0 = time.process_time(), time.monotonic()
        end = t0 + args.duration
        count = 0
        while True:
            m = msgs[i % 16]
            await ws.send(m)
            got = await ws.recv()
            if len(got) != len(m):
                raise RuntimeError("the echo differs")
            i += 1
            now = time.monotonic()
            if now > end:
                break
            count += 1
        wall = now - t0
        relay = cpu_s(pid) - relay0
        me = time.process_time() - me0
        back = (cpu_s(args.backend_pid) - back0) if args.backend_pid else None
    return {
        "load": "throughput", "label": args.label, "compression": args.compression,
        "extension": ext, "size": len(msgs[0]),
        "deflated_bytes_est": round(statistics.mean(raw_deflate_len(m) for m in msgs)),
        "messages": count, "seconds": round(wall, 3),
        "msgs_per_s": round(count / wall, 1),
        "relay_cpu_s": round(relay, 2),
        "relay_cpu_us_per_msg": round(1e6 * relay / max(count, 1), 1),
        "relay_cpu_pct": round(100 * relay / wall, 1),
        "client_cpu_pct": round(100 * me / wall, 1),
        "backend_cpu_pct": None if back is None else round(100 * back / wall, 1),
    }


def report(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    med = statistics.median
    holds = {}
    for r in runs:
        if r["load"] == "hold":
            holds.setdefault(r["label"], []).append(r)
    if holds:
        print("| config / backend / client offer | runs | sessions echoed | RSS before (MiB) "
              "| per session open, idle (KiB) | per session after one echo, idle (KiB) "
              "| RSS after close vs before | negotiated (client leg) |")
        print("|---|---|---|---|---|---|---|---|")
        for label, rs in holds.items():
            exts = ", ".join(sorted({e for r in rs for e in r["extensions"]}))
            print(f"| {label} | {len(rs)} | {min(r['echoed'] for r in rs)}/{rs[0]['sessions']} "
                  f"| {med(r['rss_kib']['before'] for r in rs) / 1024:.1f} "
                  f"| {med(r['per_session_kib']['open'] for r in rs):.1f} "
                  f"| {med(r['per_session_kib']['echoed'] for r in rs):.1f} "
                  f"({', '.join(format(r['per_session_kib']['echoed'], '.1f') for r in rs)}) "
                  f"| {med(r['closed_vs_before_pct'] for r in rs):+.0f} % | `{exts}` |")
    tps = {}
    for r in runs:
        if r["load"] == "throughput":
            tps.setdefault((r["label"], r["size"]), []).append(r)
    if tps:
        if holds:
            print()
        print("| config, message | runs | msgs/s | relay CPU µs/msg | relay CPU % "
              "| client CPU % | backend CPU % | payload deflated (est.) |")
        print("|---|---|---|---|---|---|---|---|")
        for (label, size), rs in tps.items():
            b = [r["backend_cpu_pct"] for r in rs if r["backend_cpu_pct"] is not None]
            back = f"{med(b):.0f}" if b else "–"
            print(f"| {label}, {size} B | {len(rs)} | {med(r['msgs_per_s'] for r in rs):,.0f} "
                  f"| {med(r['relay_cpu_us_per_msg'] for r in rs):.1f} "
                  f"| {med(r['relay_cpu_pct'] for r in rs):.0f} "
                  f"| {med(r['client_cpu_pct'] for r in rs):.0f} "
                  f"| {back} | {rs[0]['deflated_bytes_est']:,} B |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("hold", "throughput"):
        s = sub.add_parser(name)
        s.add_argument("--url", required=True)
        s.add_argument("--watch-pid", type=int, required=True, help="the relay's PID")
        s.add_argument("--compression", choices=["deflate", "none"], default="deflate")
        s.add_argument("--label", default="")
        if name == "hold":
            s.add_argument("--sessions", type=int, default=2000)
            s.add_argument("--size", type=int, default=1024)
            s.add_argument("--settle", type=float, default=2.0)
            s.add_argument("--after-close", type=float, default=3.0)
        else:
            s.add_argument("--size", type=int, default=4096)
            s.add_argument("--duration", type=float, default=5.0)
            s.add_argument("--warmup", type=float, default=1.0)
            s.add_argument("--backend-pid", type=int, default=0)
            s.add_argument("--settle", type=float, default=0.0)
    r = sub.add_parser("report")
    r.add_argument("results")
    args = p.parse_args()
    if args.cmd == "report":
        report(args.results)
        return
    out = asyncio.run(hold(args) if args.cmd == "hold" else throughput(args))
    print(json.dumps(out), flush=True)
    print(f"{args.cmd} {args.label}: " + json.dumps(
        out.get("per_session_kib") or {k: out[k] for k in ("msgs_per_s", "relay_cpu_us_per_msg", "client_cpu_pct")}),
        file=sys.stderr)


if __name__ == "__main__":
    main()
