"""The contact record the IVR writes as the caller goes (each step committed).

One row in ``contacts`` per call (``call_id`` = Asterisk Linkedid, idempotent), opened when
the call arrives, then one short UPDATE per step of the menu path, so a caller who hangs up
mid-menu still leaves a record with the path so far.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from ivr import records
from ivr.db import Database
from ivr.db.models import CallbackRequest, Channel, Contact

ANONYMOUS = {"", "unknown", "anonymous", "restricted", "private"}


def caller_number(env: dict[str, str] | Any) -> str:
    """The caller's number from the AGI environment, or '' when withheld."""
    raw = str(env.get("agi_callerid", "")).strip()
    if raw.lower() in ANONYMOUS:
        return ""
    number = records.normalize_phone(raw)
    return number if any(ch.isdigit() for ch in number) else ""


class ContactWriter:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self, call_id: str, phone: str, language: str) -> int:
        async with self.db.transaction() as session:
            citizen = await records.get_or_create_citizen(session, "phone", phone) if phone else None
            contact = await records.open_contact(
                session, Channel.voice, citizen, call_id=call_id or None, language=language, ivr_path=""
            )
            return contact.id

    async def step(self, contact_id: int, **fields: Any) -> None:
        """Commit the path so far (and language/topic/queue when they change)."""
        fields["updated_at"] = datetime.now(UTC)
        async with self.db.transaction() as session:
            await session.execute(update(Contact).where(Contact.id == contact_id).values(**fields))

    async def finish(self, contact_id: int, result: dict[str, str], callback: dict[str, str] | None = None,
                     **fields: Any) -> int | None:
        """The last step, the IVR's result on the timeline and, at night, the callback request."""
        fields["updated_at"] = datetime.now(UTC)
        callback_id = None
        async with self.db.transaction() as session:
            await session.execute(update(Contact).where(Contact.id == contact_id).values(**fields))
            if callback is not None:
                request = CallbackRequest(contact_id=contact_id, **callback)
                session.add(request)
                await session.flush()
                callback_id = request.id
            await records.record_event(session, contact_id, "ivr_finished", "ivr",
                                       external_id=f"ivr:{contact_id}:finished", data=result)
        return callback_id

    async def satisfaction(self, contact_id: int, score: int) -> bool:
        async with self.db.transaction() as session:
            done = await session.execute(
                update(Contact).where(Contact.id == contact_id)
                .values(satisfaction=score, updated_at=datetime.now(UTC))
            )
            if not getattr(done, "rowcount", 0):
                return False
            await records.record_event(session, contact_id, "survey", "ivr",
                                       external_id=f"ivr:{contact_id}:survey", data={"score": score})
        return True

    async def callback(self, contact_id: int | None, phone: str, queue: str, language: str) -> int:
        async with self.db.transaction() as session:
            request = CallbackRequest(contact_id=contact_id, phone=phone, queue=queue, language=language)
            session.add(request)
            await session.flush()
            if contact_id is not None:
                await records.record_event(session, contact_id, "callback_requested", "ivr",
                                           data={"queue": queue, "callback_id": request.id})
            return request.id
