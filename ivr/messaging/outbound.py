"""The ``messaging`` service: sends what arrives on the ``sms.outbound`` stream through the
configured provider, and records overdue SNS replies.

A job is ``{"to", "body", "contact_id"?, "kind"?, "message_id"?, "idempotency_key"?}``. Without
``message_id`` the outbound message row is written first (threaded like an inbound one) and
committed, then sent; with it (an agent's reply already stored) that row is sent. A redelivered
job finds its row through the timeline event ``job:sms.outbound:<job id>`` and is not sent
twice once sent; a producer that may enqueue one notice twice (a replayed open311 job) gives an
``idempotency_key`` instead, and every job with that key finds the one row (``sms_once:<key>``).
Gateway trouble leaves the job pending (retried by ``claim_stale``); a refusal marks the
message ``failed`` and acks the job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy import select

from ivr import records
from ivr.bus import Job
from ivr.context import AppContext
from ivr.contracts import Topic, contact_updated
from ivr.db.models import Channel, Citizen, Contact, ContactEvent, Message
from ivr.messaging.models import SnsDeadline
from ivr.messaging.providers import (
    Outgoing,
    Provider,
    ProviderError,
    build_provider,
    provider_named,
)
from ivr.messaging.store import OUTBOUND_STREAM, mark_sns_replied

log = logging.getLogger("dasan.messaging")
GROUP = "messaging"
MAX_DELIVERIES = 8
STALE_SECONDS = 30.0
SWEEP_SECONDS = 60.0
DRAIN_SECONDS = 25.0


class JobError(ValueError):
    """A job that can never be sent (bad fields); logged and acked."""


async def _message_for_job(ctx: AppContext, provider: Provider, job: Job) -> int:
    data = job.data
    if data.get("message_id"):
        return int(data["message_id"])
    to, body = str(data.get("to") or "").strip(), str(data.get("body") or "")
    if not to or not body:
        raise JobError("a job needs 'to' and 'body'")
    key = str(data.get("idempotency_key") or "")[:180]
    external_id = f"sms_once:{key}" if key else f"job:{OUTBOUND_STREAM}:{job.id}"
    async with ctx.db.transaction() as session:
        seen = (await session.execute(select(ContactEvent).where(
            ContactEvent.external_id == external_id))).scalar_one_or_none()
        if seen is not None:
            return int(seen.data["message_id"])
        contact = await session.get(Contact, int(data["contact_id"])) if data.get("contact_id") else None
        citizen = await records.get_or_create_citizen(session, "phone", to)
        if contact is None:
            contact = await records.find_open_contact(session, citizen) or await records.open_contact(
                session, Channel.sms, citizen)
        message = Message(contact_id=contact.id, direction="out", channel=Channel.sms, provider=provider.name,
                          sender=ctx.settings.sms.sender_number, body=body[:2000], status="queued",
                          data={"to": citizen.identity, "kind": data.get("kind") or "", "job_id": job.id})
        session.add(message)
        await session.flush()
        if not await records.record_event(session, contact.id, "sms_out", "sms", external_id=external_id,
                                          data={"message_id": message.id, "kind": data.get("kind") or ""}):
            # Another consumer stored this notice meanwhile: roll this row back; the retry finds theirs.
            raise RuntimeError(f"{external_id} was stored by another consumer meanwhile")
        return message.id


async def deliver(ctx: AppContext, provider: Provider, message_id: int) -> Message:
    """Send one stored outbound message unless it already left; returns it updated."""
    async with ctx.db.session() as session:
        message = await session.get(Message, message_id)
        if message is None or message.direction != "out":
            raise JobError(f"no outbound message {message_id}")
        if message.status not in ("queued", "retrying"):
            return message
        to = str(message.data.get("to") or "")
        network = None
        if message.channel == Channel.sns:
            contact = await session.get(Contact, message.contact_id)
            citizen = await session.get(Citizen, contact.citizen_id) if contact and contact.citizen_id else None
            if citizen is not None:
                to, network = citizen.identity, citizen.identity_kind.partition(":")[2]
    # The outbox sends nothing, so nothing will report a status.
    callback = (None if provider.name == "outbox"
                else ctx.settings.web.public_url.rstrip("/") + provider_named(provider.name).status_path)
    outgoing = Outgoing(to=to, body=message.body, channel=message.channel.value, network=network,
                        status_callback=callback)
    try:
        result = await provider.send(outgoing)
    except ProviderError as exc:
        async with ctx.db.transaction() as session:
            row = await session.get(Message, message_id)
            assert row is not None
            row.status = "retrying" if exc.retryable else "failed"
            row.data = {**row.data, "error": str(exc)[:500]}
        if exc.retryable:
            raise
        return row
    async with ctx.db.transaction() as session:
        row = await session.get(Message, message_id)
        assert row is not None
        row.provider = provider.name
        row.provider_message_id = result.provider_message_id
        row.status = result.status
        if row.channel == Channel.sns:
            await mark_sns_replied(session, row.contact_id, row)
    return row


class MessagingService:
    name = "messaging"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.consumer = f"messaging-{socket.gethostname()}-{os.getpid()}"
        self.http: aiohttp.ClientSession | None = None
        self.provider: Provider | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.sent = 0

    async def start(self) -> list[str]:
        self.http = aiohttp.ClientSession()
        self.provider = build_provider(self.ctx.settings.sms, self.http)
        self._tasks = [asyncio.create_task(self.run(), name="messaging-outbound"),
                       asyncio.create_task(self.sweep_forever(), name="messaging-sns-sweep")]
        return [f"bus stream {OUTBOUND_STREAM} (group {GROUP}) -> {self.provider.name}"]

    async def stop(self) -> None:
        # A message handed to the gateway gets its result committed before we stop; otherwise
        # it would stay "queued" and be sent a second time after a restart.
        self._stopping.set()
        run, *others = self._tasks
        for task in others:
            task.cancel()
        try:
            await asyncio.wait_for(run, DRAIN_SECONDS)
        except TimeoutError:
            log.warning("outbound sender did not finish within %ss; cut", DRAIN_SECONDS)
        for task in others:
            with suppress(asyncio.CancelledError):
                await task
        if self.http is not None:
            await self.http.close()

    async def run(self) -> None:
        await self.ctx.bus.serve(OUTBOUND_STREAM, GROUP, self.consumer, self.handle,
                                 self._stopping.is_set, STALE_SECONDS)

    async def handle(self, job: Job) -> None:
        assert self.provider is not None
        try:
            message_id = await _message_for_job(self.ctx, self.provider, job)
            await deliver(self.ctx, self.provider, message_id)
        except (JobError, KeyError, ValueError, TypeError) as exc:
            log.warning("outbound job %s dropped: %s", job.id, exc)
        except Exception:
            if job.deliveries < MAX_DELIVERIES:
                log.warning("outbound job %s failed (try %d); will retry", job.id, job.deliveries, exc_info=True)
                return
            log.exception("outbound job %s given up after %d tries", job.id, job.deliveries)
        else:
            self.sent += 1
        await self.ctx.bus.ack(job, GROUP)

    async def sweep_forever(self) -> None:
        while True:
            try:
                await sweep_sns_deadlines(self.ctx)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SNS deadline sweep failed")
            await asyncio.sleep(SWEEP_SECONDS)


async def sweep_sns_deadlines(ctx: AppContext, now: datetime | None = None) -> int:
    """Put ``sns_deadline_missed`` on the timeline of each unanswered, overdue SNS message
    (once: the event's external id is the deadline's)."""
    now = now or datetime.now(UTC)
    missed: list[int] = []
    async with ctx.db.transaction() as session:
        rows = (await session.execute(select(SnsDeadline).where(
            SnsDeadline.replied_at.is_(None), SnsDeadline.due_at < now))).scalars().all()
        for row in rows:
            data: dict[str, Any] = {"message_id": row.message_id, "due_at": row.due_at.isoformat()}
            if await records.record_event(session, row.contact_id, "sns_deadline_missed", "sns",
                                          external_id=f"sns_deadline:{row.id}", data=data):
                missed.append(row.contact_id)
    for contact_id in missed:
        await ctx.bus.publish(Topic.CONTACT_UPDATED, contact_updated(contact_id, ["sns_deadline"]))
    return len(missed)
