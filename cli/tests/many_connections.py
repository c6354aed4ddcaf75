#!/usr/bin/env python3
"""Opens N TCP connections to an echo server at once, keeps every one open,
then sends a distinct line on each and checks it comes back.

usage: many_connections.py HOST N     (exit status 1 unless all N echo)
"""
import asyncio, sys, resource, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, n = sys.argv[1], int(sys.argv[2])
async def main():
    conns = []
    t0 = time.time()
    sem = asyncio.Semaphore(2000)
    async def open_one(i):
        async with sem:
            for attempt in range(5):
                try:
                    r, w = await asyncio.wait_for(asyncio.open_connection(host, 7), 10)
                    return (r, w)
                except Exception as e:
                    err = e
            raise err
    conns = await asyncio.gather(*[open_one(i) for i in range(n)], return_exceptions=True)
    ok = [c for c in conns if not isinstance(c, Exception)]
    print(f"opened {len(ok)}/{n} in {time.time()-t0:.1f}s")
    async def ping(i, c):
        r, w = c
        msg = f"conn {i}\n".encode()
        w.write(msg); await w.drain()
        got = await asyncio.wait_for(r.readexactly(len(msg)), 30)
        return got == msg
    res = await asyncio.gather(*[ping(i, c) for i, c in enumerate(ok)], return_exceptions=True)
    echoed = sum(1 for x in res if x is True)
    print(f"echoed on {echoed}/{len(ok)} open connections, all held at once")
    return echoed == n
sys.exit(0 if asyncio.run(main()) else 1)
