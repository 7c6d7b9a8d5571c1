"""The SQL of AMI ingestion: the batch's INSERTs per back-end, and the contact and live-call
changes a batch folds before writing them in a few statements (not one per event)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.ami.models import LiveCall, OutboxJob
from ivr.db.json_insert import JsonInsert
from ivr.db.models import Contact, ContactEvent, Recording
from ivr.records import insert_for

# The outcome of a call that ended unseen (the bridge or the IVR away); weaker than any
# other outcome, so a later Cdr (or the IVR's own write) replaces it.
UNOBSERVED = "unobserved"


@dataclass(frozen=True)
class Statements:
    """The batch's INSERTs, built once per back-end."""

    timeline: JsonInsert
    recordings: JsonInsert
    live_queued: Any
    live_other: Any
    outbox: Any


_STATEMENTS: dict[str, Statements] = {}
_TIMELINE_COLUMNS = ("contact_id", "kind", "source", "external_id", "data", "at")
_RECORDING_COLUMNS = ("contact_id", "path", "format", "integrity", "legal_hold", "created_at",
                      "transcription_status", "transcription_attempts")


def statements_for(session: AsyncSession) -> Statements:
    dialect = session.get_bind().dialect
    found = _STATEMENTS.get(dialect.name)
    if found is None:
        events: Any = ContactEvent.__table__
        recordings: Any = Recording.__table__
        live = insert_for(session, LiveCall.__table__)
        set_ = {c: live.excluded[c] for c in ("contact_id", "queue", "state", "agent", "updated_at")}
        found = _STATEMENTS[dialect.name] = Statements(
            timeline=JsonInsert(dialect, events, _TIMELINE_COLUMNS, ("external_id",), ("external_id",)),
            recordings=JsonInsert(dialect, recordings, _RECORDING_COLUMNS, ("path",)),
            live_queued=live.on_conflict_do_update(index_elements=["linkedid"],
                                                   set_={**set_, "joined_at": live.excluded.joined_at}),
            live_other=live.on_conflict_do_update(index_elements=["linkedid"], set_=set_),
            outbox=insert_for(session, OutboxJob.__table__).on_conflict_do_nothing(index_elements=["key"])
            .returning(OutboxJob.__table__.c.id, OutboxJob.__table__.c.key),
        )
    return found


class ContactUpdates:
    """Per-contact column changes folded in event order: 'set' wins, 'first' only fills."""

    def __init__(self) -> None:
        self.ops: dict[int, dict[str, tuple[str, Any]]] = {}

    def set(self, contact_id: int, column: str, value: Any) -> None:
        if value is not None:
            self.ops.setdefault(contact_id, {})[column] = ("set", value)

    def first(self, contact_id: int, column: str, value: Any) -> None:
        if value is not None:
            self.ops.setdefault(contact_id, {}).setdefault(column, ("first", value))

    def over_unobserved(self, contact_id: int, column: str, value: Any) -> None:
        """Fill an empty or ``unobserved`` outcome (a Cdr after a gap); a 'set' in this batch wins."""
        columns = self.ops.setdefault(contact_id, {})
        if columns.get(column, ("first",))[0] == "first":
            columns[column] = ("over", value)

    async def execute(self, session: AsyncSession, now: datetime) -> None:
        # Contacts changed the same way (same columns, same modes) share one executemany.
        groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
        for contact_id, columns in self.ops.items():
            signature = tuple(sorted((column, mode) for column, (mode, _) in columns.items()))
            params = {"_cid": contact_id, "_now": now, **{f"_v_{c}": v for c, (_, v) in columns.items()}}
            groups.setdefault(signature, []).append(params)
        table: Any = Contact.__table__
        for signature, rows in groups.items():
            values: dict[str, Any] = {"updated_at": bindparam("_now")}
            for column, mode in signature:
                value: Any = bindparam(f"_v_{column}")
                if mode == "set":
                    values[column] = value
                elif mode == "over":
                    values[column] = fill_outcome(table.c[column], value)
                else:
                    values[column] = func.coalesce(table.c[column], value)
            stmt = update(table).where(table.c.id == bindparam("_cid")).values(values)
            await session.execute(stmt, rows)


def fill_outcome(column: Any, value: Any) -> Any:
    """``value`` where the outcome is empty or ``unobserved``; any other outcome stays."""
    return case((or_(column.is_(None), column == UNOBSERVED), value), else_=column)


class LivePlan:
    """The net change of a batch to ``ami_live_calls``: one statement per kind, not per event."""

    def __init__(self) -> None:
        self.ops: dict[str, tuple[str, dict[str, Any] | None]] = {}

    def upsert(self, linkedid: str, contact_id: int, queue: str | None, state: str, agent: str | None) -> None:
        self.ops[linkedid] = ("upsert", {"linkedid": linkedid, "contact_id": contact_id, "queue": queue,
                                         "state": state, "agent": agent})

    def delete(self, linkedid: str) -> None:
        self.ops[linkedid] = ("delete", None)

    def delete_if_queued(self, linkedid: str) -> None:
        op = self.ops.get(linkedid)
        if op is None:
            self.ops[linkedid] = ("delete_queued", None)
        elif op[0] == "upsert" and op[1] is not None and op[1]["state"] == "queued":
            self.ops[linkedid] = ("delete", None)

    async def execute(self, session: AsyncSession, now: datetime) -> None:
        for kind, condition in (("delete", None), ("delete_queued", "queued")):
            ids = sorted(k for k, (op, _) in self.ops.items() if op == kind)
            for i in range(0, len(ids), 500):
                stmt = delete(LiveCall).where(LiveCall.linkedid.in_(ids[i : i + 500]))
                if condition:
                    stmt = stmt.where(LiveCall.state == condition)
                await session.execute(stmt)
        rows = [{**r, "joined_at": now, "updated_at": now} for op, r in self.ops.values() if op == "upsert" and r]
        statements = statements_for(session)
        for queued in (True, False):  # a caller (re)joining a queue restarts the wait clock
            same = [r for r in rows if (r["state"] == "queued") is queued]
            if same:
                await session.execute(statements.live_queued if queued else statements.live_other, same)
