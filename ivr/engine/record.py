"""The contact record the IVR writes as the caller goes (each step committed, group-committed).

One row in ``contacts`` per call (``call_id`` = Asterisk Linkedid, idempotent), opened when
the call arrives, then one short UPDATE per step of the menu path, so a caller who hangs up
mid-menu still leaves a record with the path so far.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import records
from ivr.db import Database
from ivr.db.group_commit import GroupCommit
from ivr.db.json_insert import execute_together, json_insert, json_lock, json_update
from ivr.db.models import CallbackRequest, Contact, ContactEvent

log = logging.getLogger("dasan.ivr.record")
ANONYMOUS = {"", "unknown", "anonymous", "restricted", "private"}


CONTACTS = cast(Table, Contact.__table__)  # Core statements: the ORM costs more per row
EVENTS = cast(Table, ContactEvent.__table__)
MAX_BATCH = 512  # writes per shared transaction: bounds how long one commit keeps others waiting
COMMIT_INTERVAL = 0.025  # seconds between the starts of two commits under load (ivr.db.group_commit)
T = TypeVar("T")
Write = Callable[[AsyncSession], Awaitable[T]]


def _log_failure(op: _Op, exc: BaseException) -> None:
    call_id = op.handle.call.call_id if op.handle is not None else "?"
    log.error("call %s: IVR path step not recorded: %s", call_id, exc)


def caller_number(env: dict[str, str] | Any) -> str:
    """The caller's number from the AGI environment, or '' when withheld."""
    raw = str(env.get("agi_callerid", "")).strip()
    if raw.lower() in ANONYMOUS:
        return ""
    number = records.normalize_phone(raw)
    return number if any(ch.isdigit() for ch in number) else ""


class ContactHandle:
    """A call's contact as the writer knows it: queued to be opened, then its id once committed.

    The IVR goes on with the menus at once; ``opened`` resolves with the contact id when the
    commit that created it is durable (by then the caller is usually still in the first prompt).
    """

    __slots__ = ("call", "id", "opened")

    def __init__(self, call: records.NewCall) -> None:
        self.call = call
        self.id: int | None = None  # set inside the transaction that creates it
        self.opened: asyncio.Future[int]


@dataclass(slots=True)
class _Op:
    """One queued write. ``handle`` ops are merged into set-based statements per batch;
    ``write`` ops (rare: survey, callbacks) run as they are."""

    kind: str  # open | update | event | write
    handle: ContactHandle | None = None
    fields: dict[str, Any] | None = None
    write: Write[Any] | None = None
    locks: int | None = None  # the contact a ``write`` changes (locked with the batch's, in order)
    locks_call: str = ""  # or that contact's call id (Linkedid), when the caller knows only that


class ContactWriter:
    """Writes the IVR's record through one group commit (``ivr.db.group_commit``).

    Each kind of write becomes one set-based statement per batch: the contacts opened, the path
    updates (several steps of one call merge into one), the timeline events. Futures resolve
    only once their transaction committed. With the database away the calls go on without a
    record, and the log says so.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        # On the server's own loop, not the writer thread: a caller waits on a command reply
        # only, and a writer thread holding the GIL would be in that reply's way (paced p99).
        self.group = GroupCommit(db, self._run, interval=COMMIT_INTERVAL, max_batch=MAX_BATCH,
                                 skip=self._orphan, rolled_back=self._rolled_back, post_failed=_log_failure,
                                 threaded=False, name="ivr")

    async def flush(self) -> None:
        """Wait until every queued write is committed (shutdown)."""
        await self.group.flush()

    @staticmethod
    def _orphan(op: _Op) -> BaseException | None:
        """A write for a contact whose open failed fails the same way, without a try."""
        handle = op.handle
        if op.kind == "open" or handle is None or handle.id is not None or not handle.opened.done():
            return None
        exc = handle.opened.exception() if not handle.opened.cancelled() else None
        return exc or RuntimeError("contact was not opened")

    @staticmethod
    def _rolled_back(batch: list[_Op]) -> None:
        for op in batch:  # ids handed out inside the failed transaction are gone with it
            if op.kind == "open" and op.handle is not None:
                op.handle.id = None

    async def _run(self, session: AsyncSession, batch: list[_Op]) -> list[Any]:
        conn = await session.connection()  # Core statements: no ORM layer per statement
        opens = [op.handle for op in batch if op.kind == "open" and op.handle is not None]
        if opens:
            found = await records.ensure_call_contacts(conn, [h.call for h in opens])
            for handle in opens:
                handle.id = found[handle.call.call_id][0]
        # Path steps and finishes: the latest value of each field per contact, one UPDATE per shape.
        merged: dict[int, dict[str, Any]] = {}
        events: list[dict[str, Any]] = []
        for op in batch:
            if op.handle is None or op.kind not in ("update", "event"):
                continue
            contact_id = op.handle.id
            if contact_id is None:
                raise RuntimeError("contact not opened")  # only if the open was not queued first
            assert op.fields is not None
            if op.kind == "update":
                merged.setdefault(contact_id, {}).update(op.fields)
            else:
                events.append({**op.fields, "contact_id": contact_id,
                               "external_id": op.fields["external_id"].format(contact=contact_id)})
        # Every contact row this batch changes is locked first, in id order, as the AMI bridge does:
        # two writers then never hold a row each that the other waits for (a deadlock).
        locked = {*merged, *(op.locks for op in batch if op.locks is not None)}
        by_call = sorted({op.locks_call for op in batch if op.locks is None and op.locks_call})
        if by_call:  # a write that finds its contact by Linkedid changes it after the lock: lock it too
            locked.update((await conn.execute(select(CONTACTS.c.id).where(CONTACTS.c.call_id.in_(by_call)))).scalars())
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for contact_id, fields in merged.items():
            fields["id"] = contact_id
            shapes.setdefault(tuple(sorted(fields)), []).append(fields)
        work: list[tuple[Any, list[dict[str, Any]]]] = [
            (json_update(conn, CONTACTS, "id", [key for key in keys if key != "id"]), rows)
            for keys, rows in shapes.items()]
        if locked:
            work.insert(0, (json_lock(conn, CONTACTS, "id"), [{"id": i} for i in sorted(locked)]))
        if events:
            work.append((json_insert(conn, EVENTS, ("contact_id", "kind", "source", "at", "external_id", "data"),
                                     ("external_id",)), events))
        await execute_together(conn, work)
        results: list[Any] = []
        for op in batch:
            if op.kind == "open":
                assert op.handle is not None
                results.append(op.handle.id)
            elif op.kind == "write":
                assert op.write is not None
                results.append(await op.write(session))
            else:
                results.append(None)
        return results

    # -- what the engine calls ---------------------------------------------------------

    def open(self, call_id: str, phone: str, language: str, channel: str = "voice") -> ContactHandle:
        """Queue the call's contact (idempotent by call_id); ``handle.opened`` gives its id."""
        handle = ContactHandle(records.NewCall(call_id, phone, language, channel))
        handle.opened = self.group.submit(_Op("open", handle))
        return handle

    def step(self, handle: ContactHandle, **fields: Any) -> None:
        """Queue the path so far (and language/topic/queue when they change) without holding the
        caller: nothing is acknowledged on a step, and writes commit in order, so ``finish``
        resolving means every step before it is durable. A caller who hangs up mid-menu keeps
        the path: the queued write commits whether or not the call goes on."""
        fields["updated_at"] = datetime.now(UTC)
        self.group.post(_Op("update", handle, fields))

    def finish(self, handle: ContactHandle, result: dict[str, str], callback: dict[str, str] | None = None,
               **fields: Any) -> asyncio.Future[int | None]:
        """The last step, the IVR's result on the timeline and, at night, the callback request;
        resolves (with the callback request's id, if any) once all of it is durable."""
        fields["updated_at"] = datetime.now(UTC)
        self.group.post(_Op("update", handle, fields))  # fails with the event below if it fails
        event = {"kind": "ivr_finished", "source": "ivr", "data": result, "at": datetime.now(UTC),
                 "external_id": "ivr:{contact}:finished"}
        done = self.group.submit(_Op("event", handle, event))
        if callback is None:
            return done

        async def write(session: AsyncSession) -> int:
            assert handle.id is not None
            request = CallbackRequest(contact_id=handle.id, **callback)
            session.add(request)
            await session.flush()
            return request.id

        return self.group.submit(_Op("write", handle, write=write))

    def abandoned(self, handle: ContactHandle, where: str, queue: str, **fields: Any) -> asyncio.Future[int | None]:
        """The caller hung up after the IVR chose ``queue`` and before the queue had them: the
        contact is an abandoned call of that queue, and its timeline says ``where`` it was lost."""
        at = datetime.now(UTC)
        self.group.post(_Op("update", handle, {**fields, "queue": queue, "outcome": "abandoned",
                                                "hangup_side": "caller", "updated_at": at}))
        event = {"kind": "abandoned", "source": "ivr", "data": {"where": where, "queue": queue}, "at": at,
                 "external_id": "ivr:{contact}:abandoned"}
        return self.group.submit(_Op("event", handle, event))

    def _write(self, write: Write[T], contact_id: int | None = None, call_id: str = "") -> asyncio.Future[T]:
        return self.group.submit(_Op("write", write=write, locks=contact_id, locks_call=call_id))

    async def satisfaction(self, contact_id: int | None, score: int, call_id: str = "") -> bool:
        """The survey score on the contact (by id, else by the call's Linkedid); False: no such contact."""
        async def write(session: AsyncSession) -> bool:
            nonlocal contact_id
            if contact_id is None:
                if not call_id:
                    return False
                contact_id = (await session.execute(
                    select(CONTACTS.c.id).where(CONTACTS.c.call_id == call_id))).scalar_one_or_none()
                if contact_id is None:
                    return False
            # The survey runs only after a counsellor answered (the dialplan's ANSWEREDTIME): an
            # outcome the AMI bridge could not see (it was away) is "answered".
            outcome = CONTACTS.c.outcome
            done = await session.execute(
                update(CONTACTS).where(CONTACTS.c.id == contact_id)
                .values(satisfaction=score, updated_at=datetime.now(UTC),
                        outcome=case((or_(outcome.is_(None), outcome == "unobserved"), "answered"), else_=outcome))
            )
            if not getattr(done, "rowcount", 0):
                return False
            await records.record_event(session, contact_id, "survey", "ivr",
                                       external_id=f"ivr:{contact_id}:survey", data={"score": score})
            return True

        return await self._write(write, contact_id, call_id)

    async def callback(self, contact_id: int | None, phone: str, queue: str, language: str, call_id: str = "") -> int:
        """A callback request keeping the caller's place in ``queue``; the call's contact (by id,
        else by the call's Linkedid) gets the outcome ``callback`` if it has none yet (the caller
        left the queue to be called back: not an abandoned call)."""
        async def write(session: AsyncSession) -> int:
            nonlocal contact_id
            if contact_id is None and call_id:
                contact_id = (await session.execute(
                    select(CONTACTS.c.id).where(CONTACTS.c.call_id == call_id))).scalar_one_or_none()
            request = CallbackRequest(contact_id=contact_id, phone=phone, queue=queue, language=language)
            session.add(request)
            await session.flush()
            if contact_id is not None:
                await session.execute(update(CONTACTS).where(
                    CONTACTS.c.id == contact_id, or_(CONTACTS.c.outcome.is_(None), CONTACTS.c.outcome == "unobserved"))
                    .values(outcome="callback", updated_at=datetime.now(UTC)))
                await records.record_event(session, contact_id, "callback_requested", "ivr",
                                           data={"queue": queue, "callback_id": request.id})
            return request.id

        return await self._write(write, contact_id, call_id)
