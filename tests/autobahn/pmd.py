"""permessage-deflate peers for tests/it/autobahn.rs, with the Python `websockets` library
(an independent RFC 7692 implementation, installed by scripts/test.sh).

    python3 pmd.py server              an echo server on 127.0.0.1; prints its port
    python3 pmd.py testee BASE AGENT [CAFILE]
                                       the Autobahn client protocol against a fuzzing server
                                       (getCaseCount, runCase, updateReports); prints the count

Both offer or accept permessage-deflate with the library's defaults and take messages of any
size.
"""
import asyncio
import ssl
import sys

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def server():
    async with serve(echo, "127.0.0.1", 0, max_size=None, compression="deflate") as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        print(port, flush=True)
        await asyncio.get_running_loop().create_future()


async def testee(base, agent, cafile):
    ctx = ssl.create_default_context(cafile=cafile) if base.startswith("wss") else None
    opts = dict(ssl=ctx, max_size=None, compression="deflate", open_timeout=30)
    async with connect(f"{base}/getCaseCount", **opts) as ws:
        count = int(await ws.recv())
    for case in range(1, count + 1):
        try:
            async with connect(f"{base}/runCase?case={case}&agent={agent}", **opts) as ws:
                await asyncio.wait_for(echo(ws), 300)
        except Exception as e:  # the report judges the case; the run goes on
            print(f"{agent}: case {case}: {e!r}", file=sys.stderr)
    async with connect(f"{base}/updateReports?agent={agent}", **opts) as ws:
        await echo(ws)
    print(count, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(server())
    else:
        asyncio.run(testee(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
