"""AMI: events parsed and applied (committed) per second by the project's AMI bridge, against peers.

An ``AmiPeer`` in another process (``bench/ami_feed.py``) logs the client in like Asterisk 22
and then sends the ``answered`` capture (114 events: Newchannel ... AgentComplete, Cdr,
Hangup) retargeted to many distinct calls, in the captured TCP chunking, as fast as TCP takes
them. The clock runs from the ``go`` sent to the feeder (its first byte follows at once) to
the moment the client has every event. Each row gets a feeder of its own, replaying the same
events; all rows are measured one after the other in the same run:

- **project bridge** (``ivr.ami.service.AmiBridge``, on the project's own AMI session,
  ``ivr.ami.client``): an event counts once it is committed to the database (``AmiBridge.applied``;
  batches are committed before they count, SQLite with ``synchronous=FULL``, PostgreSQL with
  ``synchronous_commit=on``). It group-commits: up to 5,000 queued events per transaction.
- **one commit per event (no batching)**: the same bridge with ``batch=1``, so every event
  is its own durable transaction (one fsync each), the straightforward design. It is given
  far fewer calls (``BENCH_AMI_NAIVE_CALLS``) so it ends in a few seconds; a rate does not
  depend on the number of calls once there are enough of them.
- **panoramisk alone (parse only)**: a plain ``panoramisk.Manager``, the library the bridge
  was built on before, connected and logged in to the same feeder, whose only event callback
  (``register_event('*', ...)``) counts events; the clock stops when it has counted every
  one. No database and no bookkeeping: the ceiling of a client that takes its events from
  stock panoramisk (its ``Message`` parsing and ``dispatch``). Its pinger is off (the bridge
  runs its own keepalive, which does not fire in so short a run either). It is not a ceiling
  for the bridge: the bridge's protocol (``ivr.ami.client.AmiClientProtocol``) parses plain
  events into dicts itself, with no ``Message`` or ``dispatch``, and leaves
  the events it never reads unparsed, so it can apply events, commits included, faster than
  stock panoramisk parses them.

The last column divides the project bridge's rate on the same database by the row's (the
panoramisk row is compared with the bridge on each database; above 1 x, the bridge is
faster). RSS is the whole benchmark process; none is given for the panoramisk row, which runs
in that same process. Goal: 20,000 events/s applied by the project bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from panoramisk import Manager

from bench import report
from bench.ami_feed import call_chunks, count_events
from bench.databases import postgres_available, postgres_db, sqlite_db
from bench.measure import ServerProcess, rss_kib
from ivr import datafolder
from ivr.ami.service import BATCH, AmiBridge
from ivr.config import Settings
from ivr.context import AppContext

CALLS = int(os.environ.get("BENCH_AMI_CALLS", "400"))
# One fsync per event: a few hundred to a few thousand events per second, so far fewer calls.
NAIVE_CALLS = int(os.environ.get("BENCH_AMI_NAIVE_CALLS", "20"))
GOAL = 20_000


@dataclass
class Result:
    events: int
    expected: int
    seconds: float
    commits: int | None = None
    rss_mib: float | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


# One random AMI secret per run for the feeder and the clients (no secret ships anywhere).
SECRET = secrets.token_urlsafe(18)


def _feeder(calls: int) -> tuple[ServerProcess, int]:
    feeder = ServerProcess(["-m", "bench.ami_feed", "--calls", str(calls), "--secret", SECRET])
    return feeder, feeder.start()


async def _run_bridge(url: str, calls: int, batch: int = BATCH) -> Result:
    feeder, port = _feeder(calls)
    settings = Settings()
    settings.database.url = url
    settings.ami.port = port
    settings.ami.secret = SECRET
    datafolder.seed(settings)  # the bridge reads the queues from the data folder
    ctx = await AppContext.create(settings, migrate=False)
    bridge = AmiBridge(ctx, callbacks=False, batch=batch)
    try:
        await bridge.start()
        for _ in range(600):
            if bridge.conn.state == "connected":
                break
            await asyncio.sleep(0.05)
        await bridge.wait_idle(30)  # the resync after login
        await asyncio.sleep(0.5)
        expected = count_events(call_chunks(calls))
        before, commits_before = bridge.applied, bridge.batches
        start = time.monotonic()
        feeder.send_line("go")
        deadline = start + 300
        while bridge.applied - before < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await bridge.wait_idle(60)
        elapsed = time.monotonic() - start
        return Result(bridge.applied - before, expected, elapsed, bridge.batches - commits_before,
                      rss_kib(os.getpid()) / 1024)
    finally:
        await bridge.stop()  # logs off before the feeder goes: no "connection lost" and reconnect
        await ctx.close()
        feeder.send_line("bye")
        feeder.stop()


async def _run_panoramisk(calls: int) -> Result:
    """A plain panoramisk Manager whose one event callback counts (no panoramisk.testing)."""
    feeder, port = _feeder(calls)
    s = Settings().ami
    s.secret = SECRET
    loop = asyncio.get_running_loop()
    logged_in: asyncio.Future[None] = loop.create_future()
    done = asyncio.Event()
    count = 0
    target = -1  # set just before "go": nothing counts as finished before that
    end = 0.0

    def on_event(_manager: Any, _event: Any) -> None:
        nonlocal count, end
        count += 1
        if count == target:
            end = time.monotonic()
            done.set()

    def on_login(_manager: Any) -> None:
        if not logged_in.done():
            logged_in.set_result(None)

    # ping_delay: the pinger off (panoramisk never reads the Pong; the bridge's own keepalive
    # would not fire in a run this short either). Login, Events: on and the FullyBooted that
    # follows are panoramisk's own.
    manager = Manager(host=s.host, port=port, username=s.username, secret=s.secret, events="on", loop=loop,
                      ping_delay=10**9, on_login=on_login)
    manager.register_event("*", on_event)
    try:
        manager.connect()
        await asyncio.wait_for(logged_in, 30)
        await asyncio.sleep(0.5)  # like the bridge rows: the login-time events are in and settled
        expected = count_events(call_chunks(calls))
        count, target = 0, expected  # FullyBooted (login) does not count
        start = time.monotonic()
        feeder.send_line("go")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 300)
        if not done.is_set():
            end = time.monotonic()
        return Result(count, expected, end - start)
    finally:
        manager.close()  # before the feeder goes: a lost connection makes panoramisk reconnect
        feeder.send_line("bye")
        feeder.stop()


def _ratio(bridge: float, other: float) -> str:
    if other <= 0:
        return "-"
    x = bridge / other
    return f"{x:,.0f} x" if x >= 10 else f"{x:.2f} x"


def main() -> None:
    report.section("AMI bridge: events parsed and applied per second", __doc__ or "")
    backends: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]] = [("SQLite", sqlite_db)]
    why_not = postgres_available()
    if not why_not:
        backends.append(("PostgreSQL", postgres_db))
    # panoramisk first, while the process is fresh (no garbage from the database runs yet).
    ceiling = asyncio.run(_run_panoramisk(CALLS))
    measured: list[tuple[str, Result, Result]] = []
    for name, factory in backends:
        with factory() as url:
            main_result = asyncio.run(_run_bridge(url, CALLS))
        with factory() as url:
            naive = asyncio.run(_run_bridge(url, NAIVE_CALLS, batch=1))
        measured.append((name, main_result, naive))

    rows: list[list[object]] = []
    short: list[str] = []
    for name, r, naive in measured:
        rows.append([f"project bridge (group commit, <= {BATCH:,} events per commit)", name, CALLS, r.events,
                     r.seconds, r.rate, r.commits, r.rss_mib, "1.00 x", "yes" if r.rate >= GOAL else "no"])
        rows.append([f"one commit per event (no batching; {NAIVE_CALLS} calls: each commit is an fsync)", name,
                     NAIVE_CALLS, naive.events, naive.seconds, naive.rate, naive.commits, naive.rss_mib,
                     _ratio(r.rate, naive.rate), "-"])
        short += [f"{label} on {name}" for label, x in (("project bridge", r), ("one commit per event", naive))
                  if x.events < x.expected]
    vs_ceiling = ", ".join(f"{_ratio(r.rate, ceiling.rate)} ({name})" for name, r, _ in measured)
    rows.append(["panoramisk alone (parse only: a stock panoramisk client's ceiling)", "none", CALLS,
                 ceiling.events, ceiling.seconds, ceiling.rate, None, None, vs_ceiling, "-"])
    if ceiling.events < ceiling.expected:
        short.append("panoramisk alone")
    report.table(["client", "database", "calls", "events", "seconds", "events/s", "commits", "RSS MiB",
                  "project bridge's events/s / this row's", f"goal {GOAL:,}/s met"], rows)
    if short:
        report.note(f"Incomplete (timed out before every event arrived): {', '.join(short)}.")
    if why_not:
        report.note(f"PostgreSQL not measured: {why_not}.")


if __name__ == "__main__":
    main()
