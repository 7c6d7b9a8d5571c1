"""Inbound SMS throughput over real HTTP: ``python -m ivr.messaging.bench [DB URL] [N] [CONCURRENCY]``.

Starts the web app on 127.0.0.1:<free port> against the given (migrated on start) database,
posts N signed SMS (every tenth one a retry of an earlier id), and prints requests per second
and latency percentiles. Default: a temporary SQLite file, N=500, concurrency 10.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from ivr.config import Settings
from ivr.context import AppContext
from ivr.messaging.testing import post_signed


async def run(url: str | None, count: int, concurrency: int) -> None:
    from ivr.open311.testing import serve

    settings = Settings()
    settings.data_dir = Path(tempfile.mkdtemp(prefix="dasan-bench-"))
    settings.ami.enabled = False
    settings.web.rate_limit_per_minute = 0
    if url:
        settings.database.url = url
    ctx = await AppContext.create(settings)
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                mid = f"bench-{i - 5 if i % 10 == 9 else i}"
                began = time.perf_counter()
                resp = await post_signed(http, f"{base}/webhooks/sms", {
                    "message_id": mid, "from": f"+8210{i % 200:08d}", "body": f"문의 {i}"},
                    settings.sms.webhook_secret)
                latencies.append(time.perf_counter() - began)
                assert resp.status == 200, resp.status

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
    await ctx.close()
    latencies.sort()
    print(f"{ctx.db.dialect}: {count} SMS in {elapsed:.1f}s = {count / elapsed:.0f}/s; "
          f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {latencies[int(0.95 * len(latencies))] * 1000:.0f} ms")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(run(args[0] if args and args[0] != "-" else None, int(args[1]) if len(args) > 1 else 500,
                    int(args[2]) if len(args) > 2 else 10))
