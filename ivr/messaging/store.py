"""Writing messages into the counselling record: inbound (threaded, idempotent, with photos),
delivery statuses, and the hand-off to other parts after commit.

Order for a provider's webhook: verify -> check photos -> one transaction (citizen, contact,
message, media rows, timeline event) -> commit -> hand off (``messages.inbound`` job, the
automatic acknowledgement on ``sms.outbound``) -> mark handed off -> HTTP 200. A retry of the
same provider message id finds the stored row and stores nothing new; if the hand-off had not
happened (bus away), the retry does it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import records
from ivr.context import AppContext
from ivr.db.models import Channel, Contact, ContactEvent, Media, Message
from ivr.messaging.media import MediaError, MediaStore, check
from ivr.messaging.models import SnsDeadline

log = logging.getLogger("dasan.messaging")
INBOUND_STREAM = "messages.inbound"
OUTBOUND_STREAM = "sms.outbound"

# Delivery statuses only move forward: a late "sent" never overwrites "delivered".
STATUS_RANK = {"queued": 0, "accepted": 0, "outbox": 1, "sending": 1, "sent": 2, "delivered": 3,
               "undelivered": 3, "failed": 3, "read": 4}

ACK_TEXTS = {
    "ko": "[{site}] 문의가 접수되었습니다. 접수번호 {tracking}. 상담사가 곧 답변드립니다.",
    "en": "[{site}] We received your inquiry. Tracking number {tracking}. A counsellor will reply soon.",
}


def ack_text(language: str, site: str, tracking: str) -> str:
    return ACK_TEXTS.get(language, ACK_TEXTS["ko"]).format(site=site, tracking=tracking)


@dataclass
class Inbound:
    provider: str
    provider_message_id: str
    channel: Channel  # sms | mms | sns
    sender: str
    identity_kind: str  # phone | sns:<network>
    body: str
    photos: list[tuple[bytes, str | None]] = field(default_factory=list)
    display_name: str | None = None
    language: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Received:
    message_id: int
    contact_id: int
    tracking_number: str
    duplicate: bool
    new_contact: bool
    rejected_media: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "contact_id": self.contact_id,
                "tracking_number": self.tracking_number, "duplicate": self.duplicate,
                "new_contact": self.new_contact, "rejected_media": self.rejected_media}


class HandOffError(RuntimeError):
    """The message is stored but could not be handed on (bus away); the provider should retry."""


async def _existing(session: AsyncSession, provider: str, pmid: str) -> Message | None:
    return (await session.execute(select(Message).where(
        Message.provider == provider, Message.provider_message_id == pmid))).scalar_one_or_none()


async def _as_received(session: AsyncSession, message: Message, duplicate: bool) -> Received:
    contact = await session.get(Contact, message.contact_id)
    assert contact is not None
    return Received(message.id, contact.id, contact.tracking_number or "", duplicate,
                    bool(message.data.get("new_contact")), list(message.data.get("rejected_media", [])))


async def receive(ctx: AppContext, inbound: Inbound) -> Received:
    """Store one inbound message durably (idempotent by provider message id) and hand it off."""
    store = MediaStore(ctx.settings.data_dir)
    limits = ctx.settings.sms
    accepted: list[tuple[bytes, str]] = []
    rejected: list[str] = []
    for index, (data, claimed) in enumerate(inbound.photos):
        if index >= limits.max_media_per_message:
            rejected.append(f"photo {index + 1}: more than {limits.max_media_per_message} photos")
            continue
        try:
            accepted.append((data, check(data, claimed, limits.max_media_bytes)))
        except MediaError as exc:
            rejected.append(f"photo {index + 1}: {exc}")
    written: list[str] = []
    try:
        async with ctx.db.transaction() as session:
            existing = await _existing(session, inbound.provider, inbound.provider_message_id)
            if existing is not None:
                received = await _as_received(session, existing, duplicate=True)
            else:
                received = await _store(session, store, inbound, accepted, rejected, written,
                                        limits.sns_reply_hours)
    except IntegrityError:
        # A concurrent retry of the same provider message won the race: it is stored once.
        for path in written:
            store.remove(path)
        async with ctx.db.session() as session:
            existing = await _existing(session, inbound.provider, inbound.provider_message_id)
            if existing is None:
                raise
            received = await _as_received(session, existing, duplicate=True)
    except BaseException:
        for path in written:
            store.remove(path)
        raise
    await hand_off(ctx, received.message_id, claimed=not received.duplicate)
    return received


async def _store(session: AsyncSession, store: MediaStore, inbound: Inbound,
                 photos: list[tuple[bytes, str]], rejected: list[str], written: list[str],
                 reply_hours: float) -> Received:
    fields: dict[str, Any] = {}
    if inbound.display_name:
        fields["display_name"] = inbound.display_name[:200]
    citizen = await records.get_or_create_citizen(session, inbound.identity_kind, inbound.sender, **fields)
    contact = await records.find_open_contact(session, citizen)
    new_contact = contact is None
    channel = Channel.mms if photos and inbound.channel == Channel.sms else inbound.channel
    if contact is None:
        language = inbound.language or citizen.preferred_language or "ko"
        contact = await records.open_contact(session, channel, citizen, language=language)
    message = Message(contact_id=contact.id, direction="in", channel=channel, provider=inbound.provider,
                      provider_message_id=inbound.provider_message_id, sender=citizen.identity,
                      body=inbound.body, status="received",
                      data={**inbound.data, "new_contact": new_contact, "rejected_media": rejected})
    session.add(message)
    await session.flush()
    for index, (data, content_type) in enumerate(photos, start=1):
        stored = store.save(contact.id, message.id, index, data, content_type)
        written.append(stored.path)
        session.add(Media(message_id=message.id, path=stored.path, content_type=stored.content_type,
                          size_bytes=stored.size_bytes, sha256=stored.sha256))
    await records.record_event(
        session, contact.id, f"{channel.value}_in", "sns" if channel == Channel.sns else "sms",
        external_id=f"message:{inbound.provider}:{inbound.provider_message_id}",
        data={"message_id": message.id, "photos": len(photos), "rejected_media": rejected})
    # Claimed in the same commit: this request hands it off (see ``hand_off``).
    await records.record_event(session, contact.id, "handed_off", "system", external_id=f"handoff:{message.id}",
                               data={"message_id": message.id})
    if channel == Channel.sns:
        now = datetime.now(UTC)
        session.add(SnsDeadline(message_id=message.id, contact_id=contact.id,
                                network=inbound.identity_kind.partition(":")[2] or "sns",
                                received_at=now, due_at=now + timedelta(hours=reply_hours)))
    return Received(message.id, contact.id, contact.tracking_number or "", False, new_contact, rejected)


async def hand_off(ctx: AppContext, message_id: int, claimed: bool = False) -> None:
    """After commit: the Open311 job and (for a new SMS inquiry) the acknowledgement.

    Whoever stores the timeline event ``handoff:<message id>`` first does it (concurrent
    retries of one message hand it off once); a failed hand-off removes that claim again so
    the provider's retry repeats it."""
    claim = f"handoff:{message_id}"
    async with ctx.db.transaction() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        contact = await session.get(Contact, message.contact_id)
        assert contact is not None
        if not claimed and not await records.record_event(
                session, contact.id, "handed_off", "system", external_id=claim, data={"message_id": message_id}):
            return
        media = (await session.execute(select(Media).where(Media.message_id == message_id)
                                       .order_by(Media.id))).scalars().all()
    job = {"contact_id": contact.id, "message_id": message.id, "channel": message.channel.value,
           "sender": message.sender, "body": message.body,
           "media": [{"path": m.path, "content_type": m.content_type} for m in media]}
    try:
        await ctx.bus.enqueue(INBOUND_STREAM, job)
        if (message.data.get("new_contact") and ctx.settings.sms.auto_ack
                and message.channel in (Channel.sms, Channel.mms)):
            await ctx.bus.enqueue(OUTBOUND_STREAM, {
                "to": message.sender, "contact_id": contact.id, "kind": "ack",
                "body": ack_text(contact.language, ctx.settings.site_name, contact.tracking_number or "")})
    except Exception as exc:
        log.exception("message %s stored but not handed off", message_id)
        async with ctx.db.transaction() as session:
            await session.execute(delete(ContactEvent).where(ContactEvent.external_id == claim))
        raise HandOffError(str(exc)) from exc


async def update_status(ctx: AppContext, provider: str, pmid: str, status: str,
                        error: str | None = None) -> Message | None:
    """A delivery-status callback; None when no message of ours has that id."""
    status = status.strip().lower()[:20]
    async with ctx.db.transaction() as session:
        message = await _existing(session, provider, pmid)
        if message is None:
            return None
        fresh = await records.record_event(
            session, message.contact_id, "sms_status", "sms",
            external_id=f"status:{provider}:{pmid}:{status}",
            data={"message_id": message.id, "status": status, "error": error})
        if fresh and STATUS_RANK.get(status, 2) >= STATUS_RANK.get(message.status, 0):
            message.status = status
            if error:
                message.data = {**message.data, "error": error[:500]}
        return message


async def mark_sns_replied(session: AsyncSession, contact_id: int, reply: Message) -> int:
    """Every unanswered SNS message of the contact received before ``reply`` is now answered."""
    result = await session.execute(
        update(SnsDeadline)
        .where(SnsDeadline.contact_id == contact_id, SnsDeadline.replied_at.is_(None),
               SnsDeadline.received_at <= reply.at)
        .values(replied_at=reply.at, reply_message_id=reply.id))
    return int(getattr(result, "rowcount", 0) or 0)
