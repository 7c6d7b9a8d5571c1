"""Batch INSERT/UPDATE through one JSON parameter (ivr.db.json_insert) on SQLite and PostgreSQL:
what goes in reads back through the ORM as the same values (datetimes, NULLs, Korean text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError

from ivr import records
from ivr.db import Database
from ivr.db.json_insert import execute_together, json_insert, json_update
from ivr.db.models import Contact, ContactEvent

CONTACTS = cast(Table, Contact.__table__)
EVENTS = cast(Table, ContactEvent.__table__)


async def test_one_update_statement_sets_each_row_its_own_values(db: Database) -> None:
    async with db.transaction() as session:
        found = await records.ensure_call_contacts(session, [records.NewCall(f"call-{n}", f"0101234000{n}", "ko")
                                                             for n in range(3)])
    ids = [found[f"call-{n}"][0] for n in range(3)]
    later = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)
    rows = [
        {"id": ids[0], "ivr_path": "main:1 > 교통:2", "topic": "transport", "updated_at": later},
        {"id": ids[1], "ivr_path": "main:9 > languages:1", "topic": None, "updated_at": later + timedelta(seconds=1)},
        {"id": 999_999, "ivr_path": "nobody", "topic": "x", "updated_at": later},  # no such contact: no-op
    ]
    async with db.transaction() as session:
        conn = await session.connection()
        await json_update(conn, CONTACTS, "id", ["ivr_path", "topic", "updated_at"]).execute(conn, rows)
    async with db.session() as session:
        stored = {c.id: c for c in await session.scalars(select(Contact).where(Contact.id.in_(ids)))}
    assert stored[ids[0]].ivr_path == "main:1 > 교통:2" and stored[ids[0]].topic == "transport"
    assert stored[ids[1]].ivr_path == "main:9 > languages:1" and stored[ids[1]].topic is None
    assert stored[ids[2]].ivr_path == ""  # not in the batch: untouched
    first, second = stored[ids[0]].updated_at, stored[ids[1]].updated_at
    if first.tzinfo is None:  # SQLite gives naive UTC back
        first, second = first.replace(tzinfo=UTC), second.replace(tzinfo=UTC)
    assert (first, second) == (later, later + timedelta(seconds=1))
    async with db.session() as session:
        assert await session.scalar(select(Contact.id).where(Contact.ivr_path == "nobody")) is None


async def test_statements_sent_together_apply_in_order_and_fail_together(db: Database) -> None:
    async with db.transaction() as session:
        found = await records.ensure_call_contacts(session, [records.NewCall("call-t", "01055550000", "ko")])
    contact_id = found["call-t"][0]
    now = datetime.now(UTC)
    path = json_update(db.engine.sync_engine, CONTACTS, "id", ["ivr_path", "updated_at"])
    event = json_insert(db.engine.sync_engine, EVENTS, ("contact_id", "kind", "source", "at", "external_id", "data"),
                        ("external_id",))
    async with db.transaction() as session:
        conn = await session.connection()
        await execute_together(conn, [
            (path, [{"id": contact_id, "ivr_path": "main:1", "updated_at": now}]),
            (path, [{"id": contact_id, "ivr_path": "main:1 > transport:2", "updated_at": now}]),  # later wins
            (event, [{"contact_id": contact_id, "kind": "ivr_finished", "source": "ivr", "at": now,
                      "external_id": f"t:{contact_id}", "data": {"result": "queue"}}]),
        ])
    async with db.session() as session:
        contact = await session.get(Contact, contact_id)
        assert contact is not None and contact.ivr_path == "main:1 > transport:2"
        assert await session.scalar(select(ContactEvent.data).where(ContactEvent.external_id == f"t:{contact_id}")) \
            == {"result": "queue"}
    with pytest.raises(IntegrityError):  # a bad row fails the whole transaction (as SQLAlchemy says it)
        async with db.transaction() as session:
            conn = await session.connection()
            await execute_together(conn, [
                (path, [{"id": contact_id, "ivr_path": "should not stay", "updated_at": now}]),
                (event, [{"contact_id": 999_999, "kind": "x", "source": "ivr", "at": now,  # no such contact
                          "external_id": "t:bad", "data": {}}]),
            ])
    async with db.session() as session:
        contact = await session.get(Contact, contact_id)
        assert contact is not None and contact.ivr_path == "main:1 > transport:2"
