"""Batch INSERT/UPDATE through one JSON parameter (ivr.db.json_insert) on SQLite and PostgreSQL:
what goes in reads back through the ORM as the same values (datetimes, NULLs, Korean text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, select

from ivr import records
from ivr.db import Database
from ivr.db.json_insert import json_update
from ivr.db.models import Contact

CONTACTS = cast(Table, Contact.__table__)


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
