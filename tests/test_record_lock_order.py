"""The IVR's record locks every contact row of a batch in id order before changing any, even a
contact that a survey or callback write finds only by the call's Linkedid.

Such a write used to change its row after the batch's locks were taken: a batch stepping
contact 2 and storing the survey of contact 1 locked 2, then 1; the AMI bridge locks 1, then 2;
the two deadlocked. Here another PostgreSQL session (as the bridge) holds contact 1 while such
a batch runs: the batch must wait for 1 holding nothing else, so 2 is still free to take.
"""

from __future__ import annotations

import asyncio

import psycopg
from sqlalchemy import select

from ivr.db import Database
from ivr.db.models import Contact
from ivr.engine.record import ContactWriter


async def _wait_until_someone_waits_for_a_lock(conn: psycopg.AsyncConnection) -> None:
    """Until a session of this database waits for a row lock (the writer's batch is blocked)."""
    while True:  # PostgreSQL tells of a lock wait only in its activity view: ask it again shortly
        row = await (await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )).fetchone()
        if row and row[0]:
            return
        await asyncio.sleep(0.01)


async def test_survey_by_linkedid_is_locked_in_id_order_with_the_batch(pg_url: str) -> None:
    db = Database(pg_url)
    writer = ContactWriter(db)
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        first, second = writer.open("lock-order-1", "+821011112222", "ko"), writer.open("lock-order-2", "+821033334444", "ko")
        one, two = await first.opened, await second.opened
        assert one < two  # contacts are inserted in call id order
        async with await psycopg.AsyncConnection.connect(plain) as bridge, \
                await psycopg.AsyncConnection.connect(plain, autocommit=True) as watcher:
            await bridge.execute("SELECT id FROM contacts WHERE id = %s FOR NO KEY UPDATE", (one,))
            # One batch: a step of contact 2 and the survey of contact 1, known only by its Linkedid.
            writer.group.interval = 0.5  # the two writes share the next commit
            writer.step(second, ivr_path="main:1")
            survey = asyncio.ensure_future(writer.satisfaction(None, 4, "lock-order-1"))
            await _wait_until_someone_waits_for_a_lock(watcher)
            # The batch waits for contact 1 and holds nothing: contact 2 is free (it was not, before).
            taken = await (await bridge.execute("SELECT id FROM contacts WHERE id = %s FOR NO KEY UPDATE NOWAIT",
                                                (two,))).fetchall()
            assert taken == [(two,)]
            assert not survey.done()
            await bridge.commit()
            assert await survey is True
        await writer.flush()
        async with db.session() as session:
            rows = (await session.execute(select(Contact.id, Contact.satisfaction, Contact.outcome, Contact.ivr_path)
                                          .where(Contact.id.in_([one, two])).order_by(Contact.id))).all()
        assert [tuple(r) for r in rows] == [(one, 4, "answered", ""), (two, None, None, "main:1")]
        assert writer.group.conflicts.seen == 0
    finally:
        await writer.flush()
        await db.dispose()
