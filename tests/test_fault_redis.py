"""Fault: Redis stops and comes back while calls go on (a private redis-server, never the shared one).

The AMI bridge records calls in the database and hands finished recordings to the
transcription worker through the ``recordings.finished`` Redis stream. While Redis is down the
caller notices nothing (AMI only observes calls); what must hold is that every call still gets
its complete record, that every finished recording still gets exactly one transcription job
once Redis is back, and that the bridge goes on by itself.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select
from test_fault_kit import own_redis

from ivr.ami.protocol import retarget
from ivr.bus.redis import RedisBus
from ivr.config import Settings
from ivr.db.models import Contact
from tests.support.ami_harness import capture_chunks, rig
from tests.support.waiting import eventually


def calls(first: int, count: int) -> list[bytes]:
    answered = capture_chunks("answered")
    out: list[bytes] = []
    for n in range(first, first + count):
        out += retarget(answered, {"1795593159.8": f"1810000000.{2 * n}", "1795593165.9": f"1810000000.{2 * n + 1}"})
    return out


async def test_redis_restart_loses_no_record_and_no_transcription_job(
        settings: Settings, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with own_redis() as server:
        bus = RedisBus(server.url, f"fault-{uuid.uuid4().hex[:8]}")
        await bus.start()
        try:
            async with rig(settings, sqlite_url, bus) as r:
                await r.peer.play(calls(0, 10))
                await r.settle()
                server.stop()  # Redis goes away; calls go on
                await r.peer.play(calls(10, 10))
                await eventually(lambda: "not published" in caplog.text, "the bridge meeting the outage", 30)
                server.start()  # back, with its append-only file
                await r.peer.play(calls(20, 5))  # and calls after the outage
                ended = 0
                for _ in range(200):  # up to ~20 s
                    async with r.ctx.db.session() as s:
                        ended = await s.scalar(select(func.count()).select_from(Contact).where(
                            Contact.ended_at.is_not(None), Contact.outcome == "answered")) or 0
                    if ended == 25:
                        break
                    await asyncio.sleep(0.1)
                dead = [f"{t.get_name()} ended with {t.exception()!r}" for t in r.bridge._tasks
                        if t.done() and not t.cancelled()]
                assert ended == 25, f"every call has its complete record; have {ended} of 25; {dead}"
                jobs = []
                for _ in range(60):  # up to ~15 s: jobs held during the outage are sent on the bridge's retry
                    jobs += await bus.consume("recordings.finished", "check", "c", count=1000, block=0.25)
                    if len({j.data["call_id"] for j in jobs}) >= 25:
                        break
                call_ids = [j.data["call_id"] for j in jobs]
                assert sorted(set(call_ids)) == sorted(f"1810000000.{2 * n}" for n in range(25)), \
                    "one transcription job per finished recording"
                assert len(call_ids) == len(set(call_ids)), "and not two"
        finally:
            await bus.close()
