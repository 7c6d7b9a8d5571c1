"""The bus contract, in-process and against the real Redis server."""

from __future__ import annotations

import asyncio
import time

from ivr.bus import Bus
from ivr.bus.base import Job
from ivr.bus.redis import RedisBus
from tests.support.waiting import eventually


async def test_publish_reaches_every_subscriber(bus: Bus) -> None:
    a = await bus.subscribe("live.queue")
    b = await bus.subscribe("live.queue")
    other = await bus.subscribe("live.other")
    await bus.publish("live.queue", {"waiting": 3, "text": "대기 3"})
    assert await a.get(timeout=2) == {"waiting": 3, "text": "대기 3"}
    assert await b.get(timeout=2) == {"waiting": 3, "text": "대기 3"}
    assert await other.get(timeout=0.2) is None
    for sub in (a, b, other):
        await sub.close()


async def test_each_job_goes_to_one_consumer_and_stays_pending_until_acked(bus: Bus) -> None:
    ids = [await bus.enqueue("jobs.t", {"n": i}) for i in range(20)]
    assert len(set(ids)) == 20
    seen: dict[str, list[int]] = {"w1": [], "w2": []}

    async def worker(name: str) -> None:
        while True:
            jobs = await bus.consume("jobs.t", "g", name, count=3, block=0.3)
            if not jobs:
                return
            for job in jobs:
                seen[name].append(job.data["n"])
                await bus.ack(job, "g")

    await asyncio.gather(worker("w1"), worker("w2"))
    assert sorted(seen["w1"] + seen["w2"]) == list(range(20))
    assert await bus.pending("jobs.t", "g") == 0


async def test_unacked_job_is_claimed_by_another_consumer(bus: Bus) -> None:
    await bus.enqueue("jobs.c", {"n": 1})
    [job] = await bus.consume("jobs.c", "g", "crashed", block=1)
    assert job.deliveries == 1
    assert await bus.pending("jobs.c", "g") == 1
    assert await bus.claim_stale("jobs.c", "g", "rescuer", min_idle=5) == []  # not stale yet
    [claimed] = await _claimed_once_stale(bus, "jobs.c", "rescuer", min_idle=0.2)
    assert claimed.id == job.id and claimed.data == {"n": 1} and claimed.deliveries == 2
    await bus.ack(claimed, "g")
    assert await bus.pending("jobs.c", "g") == 0
    assert await bus.consume("jobs.c", "g", "rescuer", block=0.2) == []


async def _claimed_once_stale(bus: Bus, stream: str, consumer: str, min_idle: float) -> list[Job]:
    """Ask until the pending job has been idle ``min_idle`` (time passing is the event here)."""
    return await eventually(lambda: bus.claim_stale(stream, "g", consumer, min_idle=min_idle),
                            f"a job of {stream} idle {min_idle} s", interval=min_idle / 4)


async def _blocked_readers(bus: Bus) -> int:
    if not isinstance(bus, RedisBus):
        return 0
    clients = await bus.redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""))


async def _one_more_blocked(bus: Bus, before: int) -> None:
    """Until one more client waits inside XREADGROUP (Redis) than ``before``; the memory bus
    blocks without I/O, within one turn of the loop."""
    if isinstance(bus, RedisBus):
        await eventually(lambda: _blocked_readers_above(bus, before), "a consumer blocked in XREADGROUP")
    else:
        await asyncio.sleep(0)


async def _blocked_readers_above(bus: Bus, before: int) -> bool:
    return await _blocked_readers(bus) > before


async def test_consume_waits_for_a_new_job(bus: Bus) -> None:
    assert await bus.consume("jobs.w", "g", "probe", block=0.05) == []  # the stream is empty
    before = await _blocked_readers(bus)
    waiting = asyncio.create_task(bus.consume("jobs.w", "g", "w", block=30))
    await _one_more_blocked(bus, before)
    assert not waiting.done()
    await bus.enqueue("jobs.w", {"late": True})
    jobs = await waiting
    assert [j.data for j in jobs] == [{"late": True}]


async def test_touch_keeps_a_long_job_from_being_claimed(bus: Bus) -> None:
    await bus.enqueue("jobs.long", {"n": 1})
    [job] = await bus.consume("jobs.long", "g", "busy", block=1)
    delivered_by = time.monotonic()
    # Once the job has been idle over a second, anyone could claim it, unless it is touched.
    await asyncio.sleep(max(0.0, delivered_by + 1.2 - time.monotonic()))
    await bus.touch(job, "g", "busy")
    assert await bus.claim_stale("jobs.long", "g", "other", min_idle=1.0) == []
    # Untouched from now on, it becomes claimable again.
    assert [j.id for j in await _claimed_once_stale(bus, "jobs.long", "other", min_idle=1.0)] == [job.id]


async def test_serve_moves_a_job_that_keeps_failing_to_the_dead_letter_stream(bus: Bus) -> None:
    """With max_deliveries, a job whose handling raises each time is handed out again after the
    idle time and then moved, with the last error, to ``<stream>.dead``; good jobs go on."""
    from ivr.bus.base import dead_letter_stream

    await bus.enqueue("jobs.poison", {"n": "poison"})
    await bus.enqueue("jobs.poison", {"n": 1})
    handled: list[object] = []
    stop = asyncio.Event()

    async def handle(job: Job) -> None:
        if job.data["n"] == "poison":
            raise ValueError("cannot parse this job")
        handled.append(job.data["n"])
        await bus.ack(job, "g")

    served = asyncio.create_task(bus.serve("jobs.poison", "g", "w", handle, stop.is_set, stale_seconds=0.1,
                                           max_deliveries=2))
    try:
        dead = await eventually(lambda: bus.consume(dead_letter_stream("jobs.poison"), "audit", "reader", block=0.2),
                                "the poison job in the dead-letter stream", timeout=20)
        assert handled == [1]
        [entry] = dead
        assert entry.data["data"] == {"n": "poison"} and entry.data["deliveries"] == 3
        assert "last error: ValueError: cannot parse this job" in entry.data["reason"]

        async def acked() -> bool:  # the entry is written first, then the job acked
            return await bus.pending("jobs.poison", "g") == 0

        await eventually(acked, "the poison job to leave the pending list")
    finally:
        stop.set()
        await asyncio.wait_for(served, 10)
