"""The IVR's record and the AMI bridge writing the same contacts at once on one PostgreSQL database.

Both writers run as a deployment splits them, each its own ``dasan up --only`` process on one
fresh PostgreSQL database: ``agi`` (the FastAGI IVR, whose record is group-committed) and
``ami`` (the AMI bridge). This process plays Asterisk to both at full speed for
``BENCH_WRITERS_SECONDS`` (default 60): it keeps ``BENCH_WRITERS_CONCURRENCY`` FastAGI calls
in flight (``bench/agi_load.py``; keys ``9 0 3``: the language menu, back to Korean, then the
24-hour queue, no think time), and for every call it starts, an ``AmiPeer`` sends the bridge
that same call's events (the captured answered call, its Linkedids set to the FastAGI call's),
so the IVR's path updates and the bridge's queue, agent and hang-up updates meet on the same
contact rows at the same moment (at 80 calls/s on a real Asterisk they deadlocked and the
IVR's batch was dropped).

Counted: deadlocks PostgreSQL detected in the database (``pg_stat_database.deadlocks``; a
serialization failure cannot happen at READ COMMITTED), transactions the two servers ran
again after one (their "running it again" log lines, ``ivr.db.conflicts``), and calls lost:
a started call whose contact misses the IVR's facts (path to the queue, ``ivr_finished``) or
the bridge's (outcome ``answered``, ``agent_complete``), checked in the database once both
servers are idle. Goal: 0 lost.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import report
from bench.agi_load import raise_fd_limit, tcp_call
from bench.ami_feed import call_chunks
from bench.databases import postgres_available, postgres_db
from bench.measure import ServerProcess, cpu_seconds, load_generator_gc, processes_named
from tests.support.ami_peer import AmiPeer

QUICK = os.environ.get("BENCH_QUICK") == "1"
SECONDS = float(os.environ.get("BENCH_WRITERS_SECONDS", "10" if QUICK else "60"))
CONCURRENCY = int(os.environ.get("BENCH_WRITERS_CONCURRENCY", "64"))
DIGITS = ["9", "0", "3"]
PATH = "main:9 > languages:0 > main:3 > queue:"
BASE = 1797000000  # call n's caller Linkedid: f"{BASE + n}.{2 * (n % BLOCK)}" (bench.ami_feed.call_chunks)
BLOCK = 200  # calls whose AMI events are prepared at once
SETTLE_SECONDS = 120  # most to wait, after the load, for both servers to have written everything
RETRIED = re.compile(r"running it again")
GIVEN_UP = re.compile(r"given up")


class CountingServer(ServerProcess):
    """A server process whose output lines about retried and given-up transactions are counted
    (its output deque keeps only the last lines)."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str, settled: str) -> None:
        super().__init__(args, env=env, ready=ready, settled=settled)
        self.retried = 0
        self.given_up = 0

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.retried += bool(RETRIED.search(line))
            self.given_up += bool(GIVEN_UP.search(line))


@dataclass
class Run:
    started: int = 0
    completed: int = 0
    failed: int = 0
    events: int = 0
    seconds: float = 0.0
    linkedids: list[str] = field(default_factory=list)


def _linkedid(n: int) -> str:
    return f"{BASE + n}.{2 * (n % BLOCK)}"


async def _load(agi_port: int, peer: AmiPeer, seconds: float, concurrency: int) -> Run:
    """Calls over FastAGI, ``concurrency`` at a time, each with its AMI events sent at its start."""
    run = Run()
    per_call: list[list[bytes]] = []
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def one(n: int) -> None:
        nonlocal per_call
        block = n % BLOCK
        if block == 0:  # this block's events, retargeted to its calls' Linkedids
            chunks = call_chunks(BLOCK, BASE + n)
            size = len(chunks) // BLOCK
            per_call = [chunks[i * size : (i + 1) * size] for i in range(BLOCK)]
        events = per_call[block]
        run.linkedids.append(_linkedid(n))
        ivr = asyncio.ensure_future(tcp_call("127.0.0.1", agi_port, "main", DIGITS, linkedid=_linkedid(n)))
        await peer.play(events)
        run.events += sum(chunk.count(b"\r\n\r\n") for chunk in events)
        result = await ivr
        if result.ok and result.variables.get("IVR_RESULT") == "queue":
            run.completed += 1
        else:
            run.failed += 1

    async def worker() -> None:
        while time.monotonic() < deadline:
            n = run.started
            run.started += 1
            await one(n)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.monotonic() - started
    return run


def _check(url: str, linkedids: list[str]) -> tuple[int, int]:
    """(calls whose record has both writers' facts, PostgreSQL's deadlock count) from the database."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        complete = conn.execute(
            "SELECT count(*) FROM contacts c WHERE c.call_id = ANY(%s) AND c.ivr_path LIKE %s "
            "AND c.outcome = 'answered' "
            "AND EXISTS (SELECT 1 FROM contact_events e WHERE e.contact_id = c.id AND e.kind = 'ivr_finished') "
            "AND EXISTS (SELECT 1 FROM contact_events e WHERE e.contact_id = c.id AND e.kind = 'agent_complete')",
            (linkedids, PATH + "%")).fetchone()
        deadlocks = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(complete[0] if complete else 0), int(deadlocks[0] if deadlocks else 0)


async def _settle(url: str, linkedids: list[str]) -> tuple[int, int]:
    """Wait until every call's record is complete, or nothing has changed for a while."""
    last, unchanged_since = -1, time.monotonic()
    end = time.monotonic() + SETTLE_SECONDS
    while True:
        complete, deadlocks = await asyncio.to_thread(_check, url, linkedids)
        if complete == len(linkedids) or time.monotonic() > end or time.monotonic() - unchanged_since > 15:
            return complete, deadlocks
        if complete != last:
            last, unchanged_since = complete, time.monotonic()
        await asyncio.sleep(0.5)


async def _bench(url: str, workdir: Path) -> list[object]:
    username, secret = "bench", secrets.token_urlsafe(16)
    peer = AmiPeer(username, secret)
    ami_port = await peer.start()
    env = {"DASAN_CONFIG": "/dev/null", "DASAN__DATABASE__URL": url, "DASAN__DATA_DIR": str(workdir / "var"),
           "DASAN__RECORDINGS__DIR": str(workdir / "recordings"), "DASAN__AGI__PORT": "0",
           "DASAN__AGI__HOST": "127.0.0.1", "DASAN__AMI__ENABLED": "true", "DASAN__AMI__HOST": "127.0.0.1",
           "DASAN__AMI__PORT": str(ami_port), "DASAN__AMI__USERNAME": username, "DASAN__AMI__SECRET": secret}
    agi = CountingServer(["-m", "ivr.cli", "up", "--only", "agi"], env=env, ready=r"dasan: agi\s+\S*?:(\d+)",
                         settled=r"dasan: ready")
    ami = CountingServer(["-m", "ivr.cli", "up", "--only", "ami"], env=env, ready=r"dasan: ami\s+\S*?:(\d+)",
                         settled=r"dasan: ready")
    try:
        agi_port = await asyncio.to_thread(agi.start)
        await asyncio.to_thread(ami.start)
        await peer.wait_login(1, timeout=60)
        database = processes_named("postgres")
        cpu_before = [cpu_seconds(agi.pid), cpu_seconds(ami.pid), sum(cpu_seconds(p) for p in database)]
        with load_generator_gc():
            run = await _load(agi_port, peer, SECONDS, CONCURRENCY)
        complete, deadlocks = await _settle(url, run.linkedids)
        cpu = [cpu_seconds(agi.pid) - cpu_before[0], cpu_seconds(ami.pid) - cpu_before[1],
               sum(cpu_seconds(p) for p in database) - cpu_before[2]]
    finally:
        agi.stop()
        ami.stop()
        await peer.close()
    lost = run.started - complete
    print(f"writers: {run.started} calls started, {run.completed} through the IVR, {complete} complete records; "
          f"deadlocks {deadlocks}, retried {agi.retried} (IVR) + {ami.retried} (AMI), given up "
          f"{agi.given_up + ami.given_up}", flush=True)
    return [f"IVR writer (`dasan up --only agi`) + AMI bridge (`dasan up --only ami`), {CONCURRENCY} calls in flight",
            "PostgreSQL", round(run.seconds), run.started, run.started / run.seconds, run.events / run.seconds,
            f"{cpu[0] / run.seconds:.0%} / {cpu[1] / run.seconds:.0%} / {cpu[2] / run.seconds:.0%}",
            deadlocks, agi.retried + ami.retried, lost, "yes" if lost == 0 else "no"]


def main() -> None:
    report.section("IVR writer and AMI bridge together on one PostgreSQL database", __doc__ or "")
    why_not = postgres_available()
    if why_not:
        report.note(f"Not measured: {why_not}.")
        return
    raise_fd_limit()
    with postgres_db() as url, tempfile.TemporaryDirectory(prefix="dasan-bench-writers-") as tmp:
        row = asyncio.run(_bench(url, Path(tmp)))
    report.table(["writers", "database", "seconds", "calls", "calls/s", "AMI events/s",
                  "CPU agi / ami / PostgreSQL", "deadlocks seen", "retried", "lost", "goal 0 lost met"], [row])


if __name__ == "__main__":
    main()
