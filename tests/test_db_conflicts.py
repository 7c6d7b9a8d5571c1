"""A group commit whose transaction PostgreSQL ends with a real deadlock (two connections that
lock two contacts in opposite order) runs it again: the items' futures settle only after the
retry, nothing is lost, and the counters say what happened; a deadlock every time is given up
after the bounded retries, reported as lost. The AMI bridge's batch transaction does the same."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import records
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.conflicts import conflict_of
from ivr.db.group_commit import GroupCommit
from ivr.db.models import Contact, ContactEvent
from tests.support.ami_harness import capture_chunks, rig

ANSWERED_ID = "1795593159.8"  # the caller's Linkedid in the captured answered call


async def _two_contacts(db: Database) -> tuple[int, int]:
    async with db.transaction() as session:
        found = await records.ensure_call_contacts(await session.connection(), [
            records.NewCall("1796100000.1"), records.NewCall("1796100000.2")])
    return found["1796100000.1"][0], found["1796100000.2"][0]


async def _waiting_for_a_lock(other: psycopg.AsyncConnection, pid: int) -> None:
    """Until backend ``pid`` waits for a row lock (the event itself, read from pg_stat_activity)."""
    while True:
        cur = await other.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
        if row is not None and row[0] == "Lock":
            return
        await asyncio.sleep(0.005)


async def _deadlock(session: AsyncSession, url: str, first: int, second: int) -> None:
    """The session locks ``first``, another connection ``second``; then each asks for the
    other's row. The session waited first and checks sooner (a shorter deadlock_timeout), so
    PostgreSQL ends the session's transaction with SQLSTATE 40P01."""
    other = await psycopg.AsyncConnection.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        await other.execute("SET deadlock_timeout = '10s'")
        await session.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
        await session.execute(update(Contact).where(Contact.id == first).values(notes="writer"))
        await other.execute("UPDATE contacts SET notes = 'other' WHERE id = %s", (second,))
        pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        blocked = asyncio.ensure_future(
            session.execute(update(Contact).where(Contact.id == second).values(notes="writer")))
        await _waiting_for_a_lock(other, pid)
        await other.execute("UPDATE contacts SET notes = 'other' WHERE id = %s", (first,))  # the cycle
        await other.commit()  # it won: the session's transaction was ended instead
        await blocked  # raises the deadlock
    finally:
        await other.close()


async def test_a_deadlocked_batch_is_run_again_and_nothing_is_lost(pg_url: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    db = Database(pg_url)
    first, second = await _two_contacts(db)
    runs: list[int] = []

    async def run(session: AsyncSession, items: list[str]) -> list[int]:
        runs.append(len(items))
        if len(runs) == 1:
            await _deadlock(session, pg_url, first, second)
        for contact in (first, second):
            await session.execute(update(Contact).where(Contact.id == contact).values(notes=items[0]))
        return [len(runs)] * len(items)

    group: GroupCommit[str] = GroupCommit(db, run, threaded=False)
    try:
        with caplog.at_level(logging.WARNING, logger="dasan.db.group_commit"):
            assert await group.submit("kept") == 2  # settled by the second run, not the deadlocked one
        assert runs == [1, 1]
        assert (group.conflicts.seen, group.conflicts.retried, group.conflicts.lost) == (1, 1, 0)
        assert any("deadlock" in r.getMessage() and "running it again" in r.getMessage() for r in caplog.records)
        async with db.session() as session:
            notes = {cid: note for cid, note in await session.execute(select(Contact.id, Contact.notes))}
        assert notes == {first: "kept", second: "kept"}
    finally:
        await db.dispose()


async def test_a_batch_that_deadlocks_every_time_is_given_up_after_the_retries(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = Database(pg_url)
    first, second = await _two_contacts(db)
    runs = 0

    async def run(session: AsyncSession, items: list[str]) -> list[None]:
        nonlocal runs
        runs += 1
        await _deadlock(session, pg_url, first, second)
        return [None] * len(items)

    group: GroupCommit[str] = GroupCommit(db, run, threaded=False)
    group.conflict_retries = 2
    try:
        with caplog.at_level(logging.ERROR, logger="dasan.db.group_commit"), pytest.raises(OperationalError) as raised:
            await group.submit("doomed")
        assert conflict_of(raised.value) == "deadlock"
        assert runs == 3
        assert (group.conflicts.seen, group.conflicts.retried, group.conflicts.lost) == (3, 2, 1)
        assert any("given up" in r.getMessage() for r in caplog.records)
    finally:
        await db.dispose()


async def test_a_deadlocked_ami_batch_is_run_again_and_the_call_is_complete(
        settings: Settings, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The AMI bridge's first batch of a call ends in a real deadlock: it is run again (counted
    as a conflict retry, not as a failure), and the call's record is as complete as without it."""
    db = Database(pg_url)
    first, second = await _two_contacts(db)
    await db.dispose()
    async with rig(settings, pg_url, MemoryBus()) as r:
        original, runs = r.bridge.ingester.apply, 0

        async def deadlocked_once(session: AsyncSession, events: list[dict[str, str]], now: object = None) -> object:
            nonlocal runs
            runs += 1
            if runs == 1:
                await _deadlock(session, pg_url, first, second)
            return await original(session, events, now)  # type: ignore[arg-type]

        r.bridge.ingester.apply = deadlocked_once  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="dasan.ami"):
            await r.peer.play(capture_chunks("answered"))
            await r.settle()
        assert runs >= 2
        conflicts = r.bridge.conflicts
        assert (conflicts.seen, conflicts.retried, conflicts.lost) == (1, 1, 0)
        assert any("deadlock" in rec.getMessage() and "running it again" in rec.getMessage() for rec in caplog.records)
        assert not any(rec.levelno >= logging.ERROR for rec in caplog.records)  # never taken for a failure
        async with r.ctx.db.session() as s:
            contact = (await s.execute(select(Contact).where(Contact.call_id == ANSWERED_ID))).scalar_one()
            kinds = list((await s.execute(select(ContactEvent.kind).where(ContactEvent.contact_id == contact.id)))
                         .scalars())
        assert contact.outcome == "answered" and contact.answered_at is not None and contact.ended_at is not None
        assert contact.talk_seconds is not None and kinds.count("agent_complete") == 1
