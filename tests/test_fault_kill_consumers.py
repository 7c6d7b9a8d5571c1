"""Fault: ``kill -9`` of a bus consumer (``open311``, ``messaging``) in the middle of 500 jobs,
then a restart.

Each consumer runs as ``dasan up --only <service>`` in its own process group on the Redis bus
(the shared server at 127.0.0.1:6379 under a unique key prefix, removed afterwards) and a
migrated SQLite file. The 500 jobs are made the way the producers make them (the webhook
writer's hand-off for ``messages.inbound``; an agent's reply and the automatic acknowledgement
for ``sms.outbound``) and are all in the stream before the consumer starts. It is killed once
some but not all are done, started again, and the stream is drained: every job then has
exactly one outcome.

A job the killed consumer had read but not acked stays pending under the dead consumer's name.
The restarted one (a new name) claims it once it has been idle for the service's
``STALE_SECONDS`` (60 s for open311, 30 s for messaging). The test does not sit through that
minute: it moves those entries' idle clock forward (``XCLAIM ... IDLE``, to the same dead
consumer, without counting a delivery), which is what the passing of time would do. After the
drain every job is delivered once more (``XGROUP SETID 0``): a kill landing between each job's
effect and its XACK. The narrowest windows (open311: the request committed, the "received" SMS
not yet enqueued; or that SMS enqueued and the XACK lost) are made to happen every time by the
last test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL
from test_fault_kill import _env, _rows, _until
from test_fault_kit import ROOT, Dasan

from ivr import records
from ivr.bus.redis import RedisBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Channel, Message

JOBS = 500
KILL_AFTER = 150
# A real (tiny) JPEG: the writer checks a photo's magic number before storing it.
PHOTO = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


@pytest.fixture
async def redis_ctx(settings: Settings) -> AsyncIterator[AppContext]:
    """The test's own view of the site: the same database and Redis prefix as the service."""
    prefix = f"dasan-kill-{uuid.uuid4().hex[:10]}"
    settings.bus.backend, settings.bus.redis_url, settings.bus.prefix = "redis", REDIS_URL, prefix
    bus = RedisBus(REDIS_URL, prefix)
    try:
        await bus.start()
    except OSError as exc:  # redis.ConnectionError is an OSError
        pytest.fail(f"no Redis at {REDIS_URL} (make services starts it): {exc}")
    ctx = AppContext(settings, Database(settings.database_url), bus)
    try:
        yield ctx
    finally:
        keys = [k async for k in bus.redis.scan_iter(f"{prefix}:*")]
        if keys:
            await bus.redis.delete(*keys)
        await ctx.close()


def _service_env(ctx: AppContext, tmp_path: Path) -> dict[str, str]:
    bus = ctx.settings.bus
    return _env(ctx.settings, tmp_path, DASAN__BUS__BACKEND="redis", DASAN__BUS__REDIS_URL=bus.redis_url,
                DASAN__BUS__PREFIX=bus.prefix)


def _db_file(ctx: AppContext) -> Path:
    return Path(ctx.settings.database_url.split("///", 1)[1])


async def _group(r: aioredis.Redis, stream: str, group: str) -> dict[str, Any] | None:
    for info in await r.xinfo_groups(stream):
        if info["name"] in (group, group.encode()):
            return dict(info)
    return None  # the consumer has not made its group yet


async def _drained(r: aioredis.Redis, stream: str, group: str) -> bool:
    """Every entry delivered to the group and acked."""
    info = await _group(r, stream, group)
    if info is None:
        return False
    last = (await r.xinfo_stream(stream))["last-generated-id"]
    return bool(info["last-delivered-id"] == last and info["pending"] == 0)


async def _age_pending(r: aioredis.Redis, stream: str, group: str, idle_seconds: float) -> list[str]:
    """Let the entries the killed consumer left pending look ``idle_seconds`` old (the time a
    restarted site would wait); they stay with that consumer and keep their delivery count."""
    entries = await r.xpending_range(stream, group, "-", "+", 1000)
    by_consumer: dict[str, list[Any]] = {}
    for e in entries:
        by_consumer.setdefault(_text(e["consumer"]), []).append(_text(e["message_id"]))
    for consumer, owned in by_consumer.items():
        await r.xclaim(stream, group, consumer, 0, owned, idle=int(idle_seconds * 1000), justid=True)
    return [_text(e["message_id"]) for e in entries]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _kill_mid_stream(service: Dasan, done: Any, r: aioredis.Redis, stream: str, group: str,
                           stale_seconds: float) -> tuple[int, list[str]]:
    """Start, kill -9 once ``KILL_AFTER`` jobs are done, then age what the dead one left pending
    and start again. Returns (jobs done at the kill, ids left pending by the kill)."""
    await asyncio.to_thread(service.start)
    await _until(lambda: done() >= KILL_AFTER, 60, f"{KILL_AFTER} jobs done")
    service.kill9()
    at_kill = done()
    assert at_kill < JOBS, f"all {JOBS} jobs were done before the kill: nothing was tested"
    left = await _age_pending(r, stream, group, stale_seconds + 1)
    await asyncio.to_thread(service.start)
    return at_kill, left


async def _wait_drained(r: aioredis.Redis, stream: str, group: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await _drained(r, stream, group):
        if time.monotonic() > deadline:
            info = await _group(r, stream, group)
            raise AssertionError(f"{stream} not drained in {timeout}s: {info}")
        await asyncio.sleep(0.2)


async def _replay_all(r: aioredis.Redis, stream: str, group: str, timeout: float) -> None:
    """Deliver every job of the stream to the group once more (``XGROUP SETID 0``): what a kill
    landing after a job's effect and before its XACK does, here for all of them at once."""
    await r.xgroup_setid(stream, group, "0")
    await _wait_drained(r, stream, group, timeout)


async def _send_outbox(ctx: AppContext, timeout: float = 60) -> None:
    """Run the messaging consumer in this process until ``sms.outbound`` is drained."""
    from ivr.messaging.outbound import GROUP, MessagingService
    from ivr.messaging.store import OUTBOUND_STREAM

    assert isinstance(ctx.bus, RedisBus)
    sender = MessagingService(ctx)
    await sender.start()
    try:
        await _wait_drained(ctx.bus.redis, ctx.bus.key(OUTBOUND_STREAM), GROUP, timeout)
    finally:
        await sender.stop()


def _received_sms(db_file: Path) -> Counter[int]:
    """contact id -> "received" SMS sent (outbox) to it."""
    return Counter(int(r[0]) for r in _rows(db_file, "SELECT contact_id FROM messages WHERE direction = 'out' "
                                                      "AND json_extract(data, '$.kind') = 'open311_received' "
                                                      "AND status = 'outbox'"))


async def _ask_then_reply_yes(ctx: AppContext, writer: Any, reports: list[Any], run: str) -> list[Any]:
    """The open311 consumer (in this process) asks each citizen to confirm their report; then
    every citizen's "예" goes onto ``messages.inbound`` (a report is filed on the yes)."""
    from ivr.messaging.store import INBOUND_STREAM, Inbound
    from ivr.open311.inbound import GROUP, InboundConsumer

    assert isinstance(ctx.bus, RedisBus)
    consumer = InboundConsumer(ctx)
    await consumer.start()
    try:
        await _wait_drained(ctx.bus.redis, ctx.bus.key(INBOUND_STREAM), GROUP, 120)
    finally:
        await consumer.stop()
    return [await writer.receive(Inbound("generic", f"yes-{run}-{n}", Channel.sms, report.sender, "phone", "예"))
            for n, report in enumerate(reports)]


async def test_kill9_open311_consumer_mid_500_messages(redis_ctx: AppContext, tmp_path: Path) -> None:
    """Half the messages are MMS with a photo (the catalogue's photo service), half SMS reports
    naming a service; each citizen is asked to confirm (done before the kill) and the 500
    confirming replies are the jobs under test: each must file exactly one service request, and
    its sender gets exactly one "received" SMS."""
    from ivr.messaging.store import INBOUND_STREAM, Inbound, InboundWriter, Received
    from ivr.open311.inbound import GROUP, STALE_SECONDS

    ctx = redis_ctx
    ctx.settings.sms.auto_ack = False  # the web service's acknowledgement SMS is not under test here
    bus = ctx.bus
    assert isinstance(bus, RedisBus)
    run = uuid.uuid4().hex[:6]
    writer = InboundWriter(ctx)

    def inbound(n: int) -> Inbound:
        sender = f"+8210{n:08d}"
        if n % 2:
            return Inbound("generic", f"o311-{run}-{n}", Channel.sms, sender, "phone", f"가로등 {n}번 고장났어요")
        return Inbound("generic", f"o311-{run}-{n}", Channel.sms, sender, "phone", f"세종대로 {n} 앞 도로가 패였어요",
                       photos=[(PHOTO, "image/jpeg")])

    # The webhook's own path (20 webhooks at a time): one commit per batch, then the hand-off
    # onto messages.inbound.
    received: list[Received] = []

    async def lane(numbers: range) -> None:
        for n in numbers:
            received.append(await writer.receive(inbound(n)))

    await asyncio.gather(*(lane(range(i, JOBS, 20)) for i in range(20)))
    message_ids = {r.message_id for r in received}
    assert len(message_ids) == JOBS and not any(r.duplicate for r in received)
    stream = bus.key(INBOUND_STREAM)
    await _ask_then_reply_yes(ctx, writer, [inbound(n) for n in range(JOBS)], run)
    assert await bus.redis.xlen(stream) == 2 * JOBS

    db_file = _db_file(ctx)

    def done() -> int:
        return int(_rows(db_file, "SELECT count(*) FROM open311_requests")[0][0])

    consumer = Dasan(["open311"], _service_env(ctx, tmp_path), ROOT)
    try:
        at_kill, left = await _kill_mid_stream(consumer, done, bus.redis, stream, GROUP, STALE_SECONDS)
        await _wait_drained(bus.redis, stream, GROUP, 60)
        assert done() == JOBS
        await _replay_all(bus.redis, stream, GROUP, 30)
    finally:
        consumer.stop()

    per_message = Counter(str(r[0]) for r in _rows(db_file, "SELECT source_ref FROM open311_requests"))
    doubled = {k: v for k, v in per_message.items() if v != 1}
    assert not doubled, f"messages with more than one service request: {doubled}"
    assert set(per_message) == {f"message:{m}" for m in message_ids}, "a message without its service request"
    codes = Counter(str(r[0]) for r in _rows(db_file, "SELECT service_code FROM open311_requests"))
    assert codes == {"street_condition": JOBS // 2, "street_light": JOBS // 2}, codes
    with_photo = _rows(db_file, "SELECT count(*) FROM open311_requests WHERE media_path IS NOT NULL")[0][0]
    assert with_photo == JOBS // 2
    # What the senders get: one "received" SMS each, naming their request (sent here by the
    # messaging consumer: a notice enqueued twice must still be sent once).
    await _send_outbox(ctx)
    received_sms = _received_sms(db_file)
    by_contact = {int(c): str(s) for c, s in _rows(db_file, "SELECT contact_id, service_request_id "
                                                            "FROM open311_requests")}
    assert set(received_sms) == set(by_contact), "a request whose sender got no 'received' SMS"
    assert all(c == 1 for c in received_sms.values()), {k: v for k, v in received_sms.items() if v != 1}
    for contact_id, body in _rows(db_file, "SELECT contact_id, body FROM messages WHERE direction = 'out' "
                                           "AND json_extract(data, '$.kind') = 'open311_received'"):
        assert by_contact[int(contact_id)] in body
    print(f"open311: {at_kill} requests at the kill, {len(left)} jobs left pending by it")


async def test_kill9_messaging_consumer_mid_500_sms(redis_ctx: AppContext, tmp_path: Path) -> None:
    """Half the jobs are agents' replies (the message row is stored first, as the console does),
    half automatic acknowledgements (the consumer writes the row): each job must give exactly
    one sent SMS in the outbox (the default provider), none left queued."""
    from ivr.messaging.outbound import GROUP, STALE_SECONDS
    from ivr.messaging.store import OUTBOUND_STREAM, ack_text

    ctx = redis_ctx
    bus = ctx.bus
    assert isinstance(bus, RedisBus)
    jobs: list[dict[str, Any]] = []
    async with ctx.db.transaction() as session:
        for n in range(JOBS):
            phone = f"+8210{50_000_000 + n:08d}"
            citizen = await records.get_or_create_citizen(session, "phone", phone)
            contact = await records.open_contact(session, Channel.sms, citizen, language="ko")
            if n % 2:  # ivr/messaging/api.py: an agent's reply
                message = Message(contact_id=contact.id, direction="out", channel=Channel.sms, provider="",
                                  sender="agent1", body=f"답변 드립니다 #{n}", status="queued",
                                  data={"to": citizen.identity, "kind": "reply", "by": "agent1"})
                session.add(message)
                await session.flush()
                jobs.append({"to": citizen.identity, "body": message.body, "contact_id": contact.id,
                             "kind": "reply", "message_id": message.id})
            else:  # ivr/messaging/store.py: the acknowledgement of a new inquiry
                jobs.append({"to": citizen.identity, "contact_id": contact.id, "kind": "ack",
                             "body": ack_text("ko", ctx.settings.site_name, contact.tracking_number or "")})
    job_ids = [await bus.enqueue(OUTBOUND_STREAM, job) for job in jobs]
    stream = bus.key(OUTBOUND_STREAM)
    db_file = _db_file(ctx)

    def done() -> int:
        return int(_rows(db_file, "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'outbox'")[0][0])

    sender = Dasan(["messaging"], _service_env(ctx, tmp_path), ROOT)
    try:
        at_kill, left = await _kill_mid_stream(sender, done, bus.redis, stream, GROUP, STALE_SECONDS)
        await _wait_drained(bus.redis, stream, GROUP, 60)
        assert done() == JOBS
        await _replay_all(bus.redis, stream, GROUP, 30)
    finally:
        sender.stop()

    out = _rows(db_file, "SELECT id, status, json_extract(data, '$.kind'), json_extract(data, '$.job_id'), "
                         "contact_id FROM messages WHERE direction = 'out'")
    assert len(out) == JOBS, f"{len(out)} outbound messages for {JOBS} jobs"
    statuses = Counter(str(r[1]) for r in out)
    assert statuses == {"outbox": JOBS}, f"every job sent once, none left queued: {statuses}"
    replies = {int(j["message_id"]) for j in jobs if j["kind"] == "reply"}
    assert {int(r[0]) for r in out if r[2] == "reply"} == replies
    per_job = Counter(str(r[3]) for r in out if r[2] == "ack")
    assert set(per_job) == set(job_ids[0::2]) and all(c == 1 for c in per_job.values()), \
        "one acknowledgement per job, none doubled"
    assert Counter(int(r[4]) for r in out) == Counter(int(j["contact_id"]) for j in jobs), "each on its own contact"
    events = _rows(db_file, "SELECT external_id, count(*) FROM contact_events WHERE kind = 'sms_out' GROUP BY 1")
    assert len(events) == JOBS // 2 and all(c == 1 for _, c in events), "one sms_out event per written job"
    print(f"messaging: {at_kill} sent at the kill, {len(left)} jobs left pending by it")


async def test_open311_redelivery_after_the_commit_sends_one_notice(redis_ctx: AppContext) -> None:
    """The narrow windows of the kill test, made to happen every time. Message A: its request is
    committed, then the consumer dies (here: Redis fails) before the "received" SMS is enqueued.
    Message B: request and SMS job are in, then the XACK is lost (as if killed just before it).
    Both jobs (the citizens' confirming "예" replies: the reply files the report) are
    redelivered: still one request each, and each sender gets exactly one SMS."""
    from ivr.messaging.store import INBOUND_STREAM, Inbound, InboundWriter
    from ivr.open311.inbound import GROUP, STALE_SECONDS, InboundConsumer

    ctx = redis_ctx
    ctx.settings.sms.auto_ack = False
    bus = ctx.bus
    assert isinstance(bus, RedisBus)
    writer, run = InboundWriter(ctx), uuid.uuid4().hex[:6]
    reports = [Inbound("generic", f"a-{run}", Channel.sms, "+821099990001", "phone", "가로등 고장"),
               Inbound("generic", f"b-{run}", Channel.sms, "+821099990002", "phone", "쓰레기 무단투기")]
    a, b = [await writer.receive(r) for r in reports]
    _, b_yes = await _ask_then_reply_yes(ctx, writer, reports, run)  # the yes replies are the jobs under test
    enqueue, ack = bus.enqueue, bus.ack
    failed: list[str] = []

    async def enqueue_failing_once(stream: str, data: dict[str, Any]) -> str:
        if stream == "sms.outbound" and "enqueue" not in failed:
            failed.append("enqueue")
            raise ConnectionError("Redis went away after the commit")
        return await enqueue(stream, data)

    async def ack_lost_once(job: Any, group: str) -> None:
        if job.data.get("message_id") == b_yes.message_id and "ack" not in failed:
            failed.append("ack")
            return  # the process died before its XACK
        await ack(job, group)

    bus.enqueue = enqueue_failing_once  # type: ignore[method-assign]
    bus.ack = ack_lost_once  # type: ignore[method-assign]
    db_file = _db_file(ctx)
    stream = bus.key(INBOUND_STREAM)
    consumer = InboundConsumer(ctx)
    await consumer.start()
    try:
        await _until(lambda: len(failed) == 2, 20, "the failed enqueue and the lost XACK")
        await _until(lambda: _rows(db_file, "SELECT count(*) FROM open311_requests")[0][0] == 2, 20,
                     "both requests committed")
    finally:
        await consumer.stop()
    assert _rows(db_file, "SELECT count(*) FROM open311_requests")[0][0] == 2, "both committed"
    assert await bus.pending(INBOUND_STREAM, GROUP) == 2, "both jobs stay pending"
    await _age_pending(bus.redis, stream, GROUP, STALE_SECONDS + 1)
    consumer = InboundConsumer(ctx)
    await consumer.start()
    try:
        await _wait_drained(bus.redis, stream, GROUP, 20)
    finally:
        await consumer.stop()
    made = dict(_rows(db_file, "SELECT source_ref, service_request_id FROM open311_requests"))
    assert set(made) == {f"message:{a.message_id}", f"message:{b.message_id}"}, made
    await _send_outbox(ctx)
    assert _received_sms(db_file) == {a.contact_id: 1, b.contact_id: 1}, "exactly one 'received' SMS each"
    for contact_id, body in _rows(db_file, "SELECT contact_id, body FROM messages WHERE direction = 'out' "
                                           "AND json_extract(data, '$.kind') = 'open311_received'"):
        message_id = a.message_id if contact_id == a.contact_id else b.message_id
        assert made[f"message:{message_id}"] in body
