"""Fault: PostgreSQL restarts while calls go on (a private cluster on a free port, never the shared one).

The database is where every record lives. A restart (``pg_ctl stop -m fast``, a few seconds
down, start) must not lose a call's record: the AMI bridge holds the events it could not
commit and commits them once the server is back; the caller notices nothing.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select
from test_fault_kit import own_postgres
from test_fault_redis import calls

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Contact, ContactEvent
from tests.support.ami_harness import rig
from tests.support.waiting import eventually


async def _ended(db: Database) -> int:
    async with db.session() as s:
        return await s.scalar(select(func.count()).select_from(Contact).where(
            Contact.ended_at.is_not(None), Contact.outcome == "answered")) or 0


async def test_postgres_restart_loses_no_record(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with own_postgres() as server:
        url = server.create_database()
        Database(url).upgrade()
        async with rig(settings, url, MemoryBus()) as r:
            await r.peer.play(calls(100, 10))
            await r.settle()
            await asyncio.to_thread(server.stop, "fast")
            await r.peer.play(calls(110, 10))  # events while the database is down
            await eventually(lambda: "AMI batch failed" in caplog.text, "the bridge meeting the outage", 30)
            await asyncio.to_thread(server.start)
            await r.peer.play(calls(120, 5))
            deadline = time.monotonic() + 30
            ended = 0
            while time.monotonic() < deadline:
                try:
                    ended = await _ended(r.ctx.db)
                except Exception:  # the pool may hand out a connection from before the restart once
                    ended = -1
                if ended == 25:
                    break
                await asyncio.sleep(0.2)
            dead = [f"{t.get_name()} ended with {t.exception()!r}" for t in r.bridge._tasks
                    if t.done() and not t.cancelled()]
            assert ended == 25, f"every call has its complete record; have {ended} of 25; {dead}"
            async with r.ctx.db.session() as s:
                rows = await s.scalar(select(func.count()).select_from(ContactEvent))
                distinct = await s.scalar(select(func.count(func.distinct(ContactEvent.external_id))))
            assert rows == distinct, "no event recorded twice"
        # The outage really hit a commit (and was ridden out by retrying, not by luck).
        assert any("failed (attempt" in rec.getMessage() for rec in caplog.records)
