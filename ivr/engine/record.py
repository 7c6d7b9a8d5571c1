"""The contact record the IVR writes as the caller goes (each step committed, group-committed).

One row in ``contacts`` per call (``call_id`` = Asterisk Linkedid, idempotent), opened when
the call arrives, then one short UPDATE per step of the menu path, so a caller who hangs up
mid-menu still leaves a record with the path so far.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import records
from ivr.db import Database
from ivr.db.models import CallbackRequest, Channel, Contact

log = logging.getLogger("dasan.ivr.record")
ANONYMOUS = {"", "unknown", "anonymous", "restricted", "private"}


CONTACTS = cast(Table, Contact.__table__)  # Core statements: the ORM's bulk-update path costs more per call
MAX_BATCH = 256  # writes per shared transaction: bounds how long one commit keeps others waiting
T = TypeVar("T")
Write = Callable[[AsyncSession], Awaitable[T]]


def _settle(future: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():  # the caller's task was cancelled: the write stands, nobody waits
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _log_failure(contact_id: int, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("contact %s: IVR path step not recorded: %s", contact_id, future.exception())


def caller_number(env: dict[str, str] | Any) -> str:
    """The caller's number from the AGI environment, or '' when withheld."""
    raw = str(env.get("agi_callerid", "")).strip()
    if raw.lower() in ANONYMOUS:
        return ""
    number = records.normalize_phone(raw)
    return number if any(ch.isdigit() for ch in number) else ""


class ContactWriter:
    """Writes through one group-commit loop: every write waits for the commit that holds it.

    Calls that write at the same moment share one transaction (one fsync on SQLite instead of
    one each); a caller goes on only once its write is durable, so nothing is acknowledged
    early. If a shared transaction fails, its writes are retried one by one, so one bad
    write cannot fail the others.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[Write[Any], asyncio.Future[Any]]] = []
        self._loop: asyncio.Task[None] | None = None

    def _enqueue(self, write: Write[T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._commit_loop())
        return future

    async def _write(self, write: Write[T]) -> T:
        return await self._enqueue(write)

    async def flush(self) -> None:
        """Wait until every queued write is committed (shutdown)."""
        while self._loop is not None and not self._loop.done():
            await asyncio.shield(self._loop)

    async def _commit_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Write[Any], asyncio.Future[Any]]]) -> None:
        try:
            async with self.db.transaction() as session:
                results = [await write(session) for write, _ in batch]
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            # Find the bad write by halves; the good ones still commit (writes are re-runnable).
            half = len(batch) // 2
            await self._commit(batch[:half])
            await self._commit(batch[half:])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)

    async def open(self, call_id: str, phone: str, language: str) -> int:
        async def write(session: AsyncSession) -> int:
            citizen = await records.get_or_create_citizen(session, "phone", phone) if phone else None
            contact = await records.open_contact(
                session, Channel.voice, citizen, call_id=call_id or None, language=language, ivr_path=""
            )
            return contact.id

        return await self._write(write)

    async def step(self, contact_id: int, **fields: Any) -> None:
        """Queue the path so far (and language/topic/queue when they change) for the next
        group commit, without holding the caller: the contact itself was committed by ``open``,
        nothing is acknowledged on a step, and the writes commit in order, so ``finish``
        returning means every step before it is durable. A caller who hangs up mid-menu keeps
        the path: the queued write commits whether or not the call goes on."""
        fields["updated_at"] = datetime.now(UTC)

        async def write(session: AsyncSession) -> None:
            await session.execute(update(CONTACTS).where(CONTACTS.c.id == contact_id).values(**fields))

        self._enqueue(write).add_done_callback(partial(_log_failure, contact_id))

    async def finish(self, contact_id: int, result: dict[str, str], callback: dict[str, str] | None = None,
                     **fields: Any) -> int | None:
        """The last step, the IVR's result on the timeline and, at night, the callback request."""
        fields["updated_at"] = datetime.now(UTC)

        async def write(session: AsyncSession) -> int | None:
            callback_id = None
            await session.execute(update(CONTACTS).where(CONTACTS.c.id == contact_id).values(**fields))
            if callback is not None:
                request = CallbackRequest(contact_id=contact_id, **callback)
                session.add(request)
                await session.flush()
                callback_id = request.id
            await records.record_event(session, contact_id, "ivr_finished", "ivr",
                                       external_id=f"ivr:{contact_id}:finished", data=result)
            return callback_id

        return await self._write(write)

    async def satisfaction(self, contact_id: int, score: int) -> bool:
        async def write(session: AsyncSession) -> bool:
            done = await session.execute(
                update(CONTACTS).where(CONTACTS.c.id == contact_id)
                .values(satisfaction=score, updated_at=datetime.now(UTC))
            )
            if not getattr(done, "rowcount", 0):
                return False
            await records.record_event(session, contact_id, "survey", "ivr",
                                       external_id=f"ivr:{contact_id}:survey", data={"score": score})
            return True

        return await self._write(write)

    async def callback(self, contact_id: int | None, phone: str, queue: str, language: str) -> int:
        async def write(session: AsyncSession) -> int:
            request = CallbackRequest(contact_id=contact_id, phone=phone, queue=queue, language=language)
            session.add(request)
            await session.flush()
            if contact_id is not None:
                await records.record_event(session, contact_id, "callback_requested", "ivr",
                                           data={"queue": queue, "callback_id": request.id})
            return request.id

        return await self._write(write)
