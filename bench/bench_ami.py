"""AMI: events parsed and applied (committed) per second by the project's AMI bridge.

An ``AmiPeer`` in another process (``bench/ami_feed.py``) logs the bridge in like Asterisk 22
and then sends the ``answered`` capture (114 events: Newchannel ... AgentComplete, Cdr,
Hangup) retargeted to many distinct calls, as fast as TCP takes them. The clock runs from the
first byte sent to the moment the bridge reports every event committed to the database
(``AmiBridge.applied``; batches are committed before they count, SQLite with
``synchronous=FULL``). Goal: 20,000 events/s applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

from bench import report
from bench.ami_feed import call_chunks, count_events
from bench.databases import postgres_available, postgres_db, sqlite_db
from bench.measure import ServerProcess, rss_kib
from ivr.ami.service import AmiBridge
from ivr.config import Settings
from ivr.context import AppContext

CALLS = int(os.environ.get("BENCH_AMI_CALLS", "400"))


async def _run(url: str, calls: int) -> dict[str, float]:
    feeder = ServerProcess(["-m", "bench.ami_feed", "--calls", str(calls)])
    port = feeder.start()
    settings = Settings()
    settings.database.url = url
    settings.ami.port = port
    ctx = await AppContext.create(settings, migrate=False)
    bridge = AmiBridge(ctx, callbacks=False)
    try:
        await bridge.start()
        for _ in range(600):
            if bridge.conn.state == "connected":
                break
            await asyncio.sleep(0.05)
        await bridge.wait_idle(30)  # the resync after login
        await asyncio.sleep(0.5)
        expected = count_events(call_chunks(calls))
        before = bridge.applied
        rss_before = rss_kib(os.getpid())
        start = time.monotonic()
        feeder.send_line("go")
        deadline = start + 300
        while bridge.applied - before < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await bridge.wait_idle(60)
        elapsed = time.monotonic() - start
        applied = bridge.applied - before
        return {"events": applied, "expected": expected, "seconds": elapsed,
                "rate": applied / elapsed, "batches": float(getattr(bridge, "batches", 0)),
                "rss_mib": rss_kib(os.getpid()) / 1024, "rss_growth_mib": (rss_kib(os.getpid()) - rss_before) / 1024}
    finally:
        feeder.send_line("bye")
        await bridge.stop()
        await ctx.close()
        feeder.stop()


def main() -> None:
    report.section("AMI bridge: events parsed and applied per second", __doc__ or "")
    rows = []
    backends: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]] = [("SQLite", sqlite_db)]
    why_not = postgres_available()
    if not why_not:
        backends.append(("PostgreSQL", postgres_db))
    for name, factory in backends:
        with factory() as url:
            r = asyncio.run(_run(url, CALLS))
        ok = "yes" if r["rate"] >= 20_000 else "no"
        rows.append([name, CALLS, int(r["events"]), r["seconds"], r["rate"], int(r["batches"]),
                     r["rss_mib"], ok])
    report.table(["database", "calls", "events applied", "seconds", "events/s", "commits", "bridge RSS MiB",
                  "goal 20,000/s met"], rows)
    if why_not:
        report.note(f"PostgreSQL not measured: {why_not}.")


if __name__ == "__main__":
    main()
