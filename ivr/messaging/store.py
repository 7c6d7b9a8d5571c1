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
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ivr import records
from ivr.context import AppContext
from ivr.contracts import Stream
from ivr.db.database import among
from ivr.db.group_commit import GroupCommit
from ivr.db.json_insert import json_insert
from ivr.db.models import (
    MESSAGE_STATUS_LENGTH,
    Channel,
    Citizen,
    Contact,
    ContactEvent,
    ContactStatus,
    Media,
    Message,
)
from ivr.knowledge.autoreply import keyword_reply
from ivr.messaging.ids import longest_message_id, message_key, status_key
from ivr.messaging.media import MediaError, MediaStore, check
from ivr.messaging.models import SnsDeadline

log = logging.getLogger("dasan.messaging")
INBOUND_STREAM = Stream.MESSAGES_INBOUND
OUTBOUND_STREAM = Stream.SMS_OUTBOUND
MESSAGES = cast(Table, Message.__table__)
EVENTS = cast(Table, ContactEvent.__table__)
MESSAGE_COLUMNS = ("contact_id", "direction", "channel", "provider", "provider_message_id", "sender", "body",
                   "status", "at", "data")
EVENT_COLUMNS = ("contact_id", "kind", "source", "at", "external_id", "data")
COMMIT_INTERVAL = 0.005  # under load, webhooks arriving within this share one commit

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


@dataclass
class _Pending:
    """One webhook's message on its way into a group commit."""

    inbound: Inbound
    photos: list[tuple[bytes, str]]  # checked, with their real content type
    rejected: list[str]
    written: list[str] = field(default_factory=list)  # media files, removed if the commit fails
    job: dict[str, Any] | None = None  # the hand-off, for a message stored by this commit
    identity: tuple[str, str] = ("", "")  # (identity kind, identity): phone numbers in E.164

    def __post_init__(self) -> None:
        kind = self.inbound.identity_kind
        self.identity = (kind, records.normalize_phone(self.inbound.sender) if kind == "phone"
                         else self.inbound.sender)


class InboundWriter:
    """Stores the inbound messages of concurrent webhooks through one group commit.

    A batch becomes a handful of set-based statements (the messages already there, the
    senders' citizens, their open contacts, new contacts, the messages, photos, timeline
    events and SNS deadlines), committed once; each webhook then hands its message off and
    answers. Idempotent by provider message id, in a batch and across retries.
    """

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.media = MediaStore(ctx.settings.data_dir)
        self.group = GroupCommit(ctx.db, self._run, interval=COMMIT_INTERVAL, rolled_back=self._rolled_back,
                                 name="messaging")

    async def receive(self, inbound: Inbound) -> Received:
        """Store one inbound message durably and hand it off (HandOffError if that fails)."""
        limits = self.ctx.settings.sms
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
        pending = _Pending(inbound, accepted, rejected)
        received: Received = await self.group.submit(pending)
        if pending.job is not None:
            await _send_hand_off(self.ctx, received.message_id, pending.job)
        else:  # a retry: hand off now if the first delivery could not
            await hand_off(self.ctx, received.message_id)
        return received

    async def flush(self) -> None:
        await self.group.flush()

    def _rolled_back(self, batch: list[_Pending]) -> None:
        for item in batch:
            for path in item.written:
                self.media.remove(path)
            item.written.clear()
            item.job = None

    async def _run(self, session: AsyncSession, batch: list[_Pending]) -> list[Received]:
        conn = await session.connection()  # Core statements only: skip the ORM layer per statement
        now = datetime.now(UTC)
        results: dict[int, Received] = {}  # by position in the batch
        seen = await self._already_stored(conn, batch)
        fresh: list[tuple[int, _Pending]] = []
        firsts: dict[tuple[str, str], int] = {}
        for position, item in enumerate(batch):
            key = (item.inbound.provider, item.inbound.provider_message_id)
            if key in seen:
                results[position] = seen[key]
            elif key in firsts:
                continue  # the same message twice in one batch: answered from the first below
            else:
                firsts[key] = position
                fresh.append((position, item))
        if fresh:
            stored = await self._store(conn, fresh, now)
            results.update(stored)
            for position, item in fresh:
                if position not in stored:  # stored meanwhile by another process: a retry
                    key = (item.inbound.provider, item.inbound.provider_message_id)
                    results[position] = (await self._already_stored(conn, [item]))[key]
        answers = []
        for position, item in enumerate(batch):
            if position in results:
                answers.append(results[position])
            else:
                first = results[firsts[(item.inbound.provider, item.inbound.provider_message_id)]]
                answers.append(Received(first.message_id, first.contact_id, first.tracking_number, True,
                                        first.new_contact, first.rejected_media))
        return answers

    async def _already_stored(self, session: AsyncConnection, batch: list[_Pending]) -> dict[tuple[str, str], Received]:
        found: dict[tuple[str, str], Received] = {}
        by_provider: dict[str, set[str]] = {}
        for item in batch:
            by_provider.setdefault(item.inbound.provider, set()).add(item.inbound.provider_message_id)
        for provider, pmids in by_provider.items():  # (provider, id) is the unique index: both in the query
            ids = sorted(pmids)
            for part in range(0, len(ids), 500):
                rows = await session.execute(
                    select(Message.provider_message_id, Message.id, Message.data, Contact.id, Contact.tracking_number)
                    .join(Contact, Contact.id == Message.contact_id)
                    .where(Message.provider == provider,
                           among(session, Message.provider_message_id, ids[part : part + 500])))
                for pmid, message_id, data, contact_id, tracking in rows:
                    found[(provider, str(pmid))] = Received(
                        message_id, contact_id, tracking or "", True, bool(data.get("new_contact")),
                        list(data.get("rejected_media", [])))
        return found

    async def _store(self, session: AsyncConnection, fresh: list[tuple[int, _Pending]],
                     now: datetime) -> dict[int, Received]:
        # The senders: one citizen per identity (created on first contact).
        identities: dict[tuple[str, str], str | None] = {}
        for _, item in fresh:
            key = item.identity
            if identities.get(key) is None:
                identities[key] = item.inbound.display_name[:200] if item.inbound.display_name else None
        await records.insert_citizens(session, [
            {"identity_kind": kind, "identity": identity, "display_name": name, "created_at": now}
            for (kind, identity), name in identities.items()])
        citizens: dict[tuple[str, str], tuple[int, str | None]] = {}
        by_kind: dict[str, list[str]] = {}
        for kind, identity in identities:
            by_kind.setdefault(kind, []).append(identity)
        for kind, names in by_kind.items():  # (kind, identity) is the unique index: both in the query
            for part in range(0, len(names), 500):
                rows = await session.execute(
                    select(Citizen.identity, Citizen.id, Citizen.preferred_language)
                    .where(Citizen.identity_kind == kind, among(session, Citizen.identity, names[part : part + 500])))
                for identity, citizen_id, language in rows:
                    citizens[(kind, str(identity))] = (citizen_id, language)
        # Their open inquiries (an SMS the day after a call is the same inquiry), else new ones.
        by_citizen = {citizen_id for citizen_id, _ in citizens.values()}
        contacts = await _open_contacts(session, sorted(by_citizen), now - records.THREAD_WINDOW)
        new_rows: dict[int, dict[str, Any]] = {}
        for _, item in fresh:
            citizen_id, preferred = citizens[item.identity]
            if citizen_id not in contacts and citizen_id not in new_rows:
                new_rows[citizen_id] = {
                    "channel": _channel(item).value, "status": ContactStatus.open.value, "call_id": None,
                    "citizen_id": citizen_id, "started_at": now, "updated_at": now,
                    "language": item.inbound.language or preferred or "ko", "ivr_path": "", "notes": ""}
        created = await records.insert_contacts(session, list(new_rows.values()), "citizen_id", now) if new_rows else {}
        for citizen_id, (contact_id, _citizen, tracking) in created.items():
            contacts[citizen_id] = (contact_id, tracking, new_rows[citizen_id]["language"])
        # The messages (a provider's retry racing us from another process is skipped here).
        message_rows: list[dict[str, Any]] = []
        opened_here: set[int] = set()
        for _, item in fresh:
            inbound = item.inbound
            citizen_id, _language = citizens[item.identity]
            contact_id = contacts[citizen_id][0]
            new_contact = citizen_id in created and contact_id not in opened_here
            opened_here.add(contact_id)
            message_rows.append({
                "contact_id": contact_id, "direction": "in", "channel": _channel(item).value,
                "provider": inbound.provider, "provider_message_id": inbound.provider_message_id,
                "sender": item.identity[1], "body": inbound.body, "status": "received", "at": now,
                "data": {**inbound.data, "new_contact": new_contact, "rejected_media": item.rejected}})
        inserted = await json_insert(session, MESSAGES, MESSAGE_COLUMNS, ("provider", "provider_message_id"),
                                     ("provider", "provider_message_id", "id")).execute(session, message_rows)
        message_ids = {(provider, pmid): message_id for provider, pmid, message_id in inserted}
        # Photos, timeline events, SNS deadlines: one statement each for the whole batch.
        media_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        deadline_rows: list[dict[str, Any]] = []
        stored: dict[int, Received] = {}
        for (position, item), row in zip(fresh, message_rows, strict=True):
            inbound = item.inbound
            message_id = message_ids.get((inbound.provider, inbound.provider_message_id))
            if message_id is None:
                continue
            contact_id = row["contact_id"]
            channel = _channel(item)
            media = []
            for index, (data, content_type) in enumerate(item.photos, start=1):
                saved = self.media.save(contact_id, message_id, index, data, content_type)
                item.written.append(saved.path)
                media.append({"path": saved.path, "content_type": saved.content_type})
                media_rows.append({"message_id": message_id, "path": saved.path, "content_type": saved.content_type,
                                   "size_bytes": saved.size_bytes, "sha256": saved.sha256})
            event_rows.append({"contact_id": contact_id, "kind": f"{channel.value}_in",
                               "source": "sns" if channel == Channel.sns else "sms", "at": now,
                               "external_id": message_key(inbound.provider, inbound.provider_message_id),
                               "data": {"message_id": message_id, "photos": len(item.photos),
                                        "rejected_media": item.rejected}})
            # Claimed in the same commit: this request hands it off (see ``hand_off``).
            event_rows.append({"contact_id": contact_id, "kind": "handed_off", "source": "system", "at": now,
                               "external_id": f"handoff:{message_id}", "data": {"message_id": message_id}})
            if channel == Channel.sns:
                deadline_rows.append({
                    "message_id": message_id, "contact_id": contact_id, "received_at": now,
                    "network": inbound.identity_kind.partition(":")[2] or "sns",
                    "due_at": now + timedelta(hours=self.ctx.settings.sms.sns_reply_hours)})
            citizen_id = citizens[item.identity][0]
            _contact, tracking, language = contacts[citizen_id]
            new_contact = bool(row["data"]["new_contact"])
            stored[position] = Received(message_id, contact_id, tracking, False, new_contact, item.rejected)
            item.job = {"contact_id": contact_id, "message_id": message_id, "channel": channel.value,
                        "sender": row["sender"], "body": inbound.body, "media": media,
                        "ack": new_contact, "language": language, "tracking_number": tracking}
        if media_rows:
            await session.execute(insert(Media), media_rows)
        if event_rows:
            await json_insert(session, EVENTS, EVENT_COLUMNS, ("external_id",)).execute(session, event_rows)
        if deadline_rows:
            await session.execute(insert(SnsDeadline), deadline_rows)
        return stored


def _channel(item: _Pending) -> Channel:
    return Channel.mms if item.photos and item.inbound.channel == Channel.sms else item.inbound.channel


async def _open_contacts(session: AsyncConnection, citizen_ids: list[int],
                         since: datetime) -> dict[int, tuple[int, str, str]]:
    """citizen id -> (contact id, tracking number, language) of their newest open contact."""
    newest: dict[int, tuple[int, str, str]] = {}
    for part in range(0, len(citizen_ids), 500):
        rows = await session.execute(
            select(Contact.citizen_id, Contact.id, Contact.tracking_number, Contact.language)
            .where(among(session, Contact.citizen_id, citizen_ids[part : part + 500]),
                   Contact.status == ContactStatus.open, Contact.started_at >= since)
            .order_by(Contact.started_at.desc(), Contact.id.desc()))
        for citizen_id, contact_id, tracking, language in rows:
            if citizen_id is not None:
                newest.setdefault(citizen_id, (contact_id, tracking or "", language))
    return newest


async def hand_off(ctx: AppContext, message_id: int) -> None:
    """A retried delivery: hand the stored message off unless that already happened.

    Whoever stores the timeline event ``handoff:<message id>`` first does it (concurrent
    retries of one message hand it off once); a failed hand-off removes that claim again so
    the provider's retry repeats it."""
    async with ctx.db.transaction() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        contact = await session.get(Contact, message.contact_id)
        assert contact is not None
        if not await records.record_event(session, contact.id, "handed_off", "system",
                                          external_id=f"handoff:{message_id}", data={"message_id": message_id}):
            return
        media = (await session.execute(select(Media).where(Media.message_id == message_id)
                                       .order_by(Media.id))).scalars().all()
    await _send_hand_off(ctx, message_id, {
        "contact_id": contact.id, "message_id": message.id, "channel": message.channel.value,
        "sender": message.sender, "body": message.body,
        "media": [{"path": m.path, "content_type": m.content_type} for m in media],
        "ack": bool(message.data.get("new_contact")), "language": contact.language,
        "tracking_number": contact.tracking_number or ""})


async def _send_hand_off(ctx: AppContext, message_id: int, job: dict[str, Any]) -> None:
    """After commit: the Open311 job and (for a new SMS inquiry) the acknowledgement."""
    ack, language, tracking = job.pop("ack"), job.pop("language"), job.pop("tracking_number")
    try:
        await ctx.bus.enqueue(INBOUND_STREAM, job)
        if ack and ctx.settings.sms.auto_ack and job["channel"] in (Channel.sms.value, Channel.mms.value):
            await ctx.bus.enqueue(OUTBOUND_STREAM, {
                "to": job["sender"], "contact_id": job["contact_id"], "kind": "ack",
                "body": ack_text(language, ctx.settings.site_name, tracking)})
        if ctx.settings.sms.keyword_articles and job["channel"] in (Channel.sms.value, Channel.mms.value):
            answer = await keyword_reply(ctx, job["body"], language, tracking, job["contact_id"])
            if answer:
                await ctx.bus.enqueue(OUTBOUND_STREAM, {"to": job["sender"], "contact_id": job["contact_id"],
                                                        "kind": "kb", "body": answer})
    except Exception as exc:
        log.exception("message %s stored but not handed off", message_id)
        async with ctx.db.transaction() as session:
            await session.execute(delete(ContactEvent).where(ContactEvent.external_id == f"handoff:{message_id}"))
        raise HandOffError(str(exc)) from exc


async def update_status(ctx: AppContext, provider: str, pmid: str, status: str,
                        error: str | None = None) -> Message | None:
    """A delivery-status callback; None when no message of ours has that id."""
    status = status.strip().lower()[:MESSAGE_STATUS_LENGTH]
    if len(pmid) > longest_message_id(provider):
        return None  # no message of ours has an id that long (its status key would not fit)
    async with ctx.db.transaction() as session:
        message = await _existing(session, provider, pmid)
        if message is None:
            return None
        fresh = await records.record_event(
            session, message.contact_id, "sms_status", "sms",
            external_id=status_key(provider, pmid, status),
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
