"""SMS/MMS -> service requests through the ``messages.inbound`` stream (memory and Redis bus):
the rule (a report, confirmed by the citizen's reply: tests/test_open311_intake.py has the
table), the served photo, the reply SMS, replays and bad jobs."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ivr import records
from ivr.bus import Bus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Channel, ContactEvent, Media, Message
from ivr.open311.inbound import GROUP, InboundConsumer
from ivr.open311.models import ServiceRequest
from tests.support.open311 import schema_validator
from tests.support.web import serve

REQUESTS = schema_validator("requests.json")
# A real (tiny) JPEG: SOI, JFIF APP0, ... EOI is enough for a photo the server only serves.
PHOTO = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


@pytest.fixture
async def ctx(sqlite_url: str, bus: Bus, tmp_path: Path) -> AsyncIterator[AppContext]:
    settings = Settings()
    settings.data_dir = tmp_path / "var"
    settings.database.url = sqlite_url
    context = AppContext(settings, Database(sqlite_url), bus)
    yield context
    await context.db.dispose()


async def store_message(ctx: AppContext, sender: str, body: str, photo: bytes | None = None,
                        language: str = "ko") -> dict[str, Any]:
    """What the messaging sidecar commits for an inbound SMS/MMS, and the job it enqueues."""
    media: list[dict[str, str]] = []
    async with ctx.db.transaction() as session:
        citizen = await records.get_or_create_citizen(session, "phone", sender)
        channel = Channel.mms if photo else Channel.sms
        contact = await records.open_contact(session, channel, citizen, language=language)
        message = Message(contact_id=contact.id, direction="in", channel=channel, sender=sender, body=body)
        session.add(message)
        await session.flush()
        if photo is not None:
            rel = Path("media") / f"{message.id}.jpg"
            (ctx.settings.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (ctx.settings.data_dir / rel).write_bytes(photo)
            session.add(Media(message_id=message.id, path=str(rel), content_type="image/jpeg",
                              size_bytes=len(photo), sha256=hashlib.sha256(photo).hexdigest()))
            media.append({"path": str(rel), "content_type": "image/jpeg"})
    return {"contact_id": contact.id, "message_id": message.id, "channel": channel.value,
            "sender": records.normalize_phone(sender), "body": body, "media": media}


async def run_jobs(ctx: AppContext, jobs: list[dict[str, Any]]) -> InboundConsumer:
    consumer = InboundConsumer(ctx)
    await consumer.start()
    try:
        for job in jobs:
            await ctx.bus.enqueue("messages.inbound", job)
        async with asyncio.timeout(60):
            await consumer.wait_handled(len(jobs))
    finally:
        await consumer.stop()
    assert await ctx.bus.pending("messages.inbound", GROUP) == 0
    return consumer


async def confirm_reports(ctx: AppContext, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the jobs, then each asked citizen's "예" (a report is filed on the citizen's yes);
    returns the questions asked."""
    await run_jobs(ctx, jobs)
    asks = [a for a in await sms_sent(ctx) if a.get("kind") == "open311_confirm"]
    await run_jobs(ctx, [await store_message(ctx, a["to"], "예") for a in asks])
    return asks


async def requests_of(ctx: AppContext) -> list[ServiceRequest]:
    async with ctx.db.session() as session:
        return list((await session.execute(select(ServiceRequest).order_by(ServiceRequest.id))).scalars())


async def sms_sent(ctx: AppContext) -> list[dict[str, Any]]:
    return [j.data for j in await ctx.bus.consume("sms.outbound", "test", "test", count=50, block=0.2)]


async def test_mms_photo_becomes_request_with_served_media(ctx: AppContext) -> None:
    job = await store_message(ctx, "010-2222-3333", "세종대로 110 앞 도로가 패였어요", PHOTO)
    assert len(await confirm_reports(ctx, [job])) == 1
    (sr,) = await requests_of(ctx)
    assert sr.service_code == "street_condition" and sr.source == "mms"  # the catalogue's photo_service
    assert sr.contact_id == job["contact_id"] and sr.description == "세종대로 110 앞 도로가 패였어요"
    assert sr.address is None and sr.lat is None  # the SMS text is not published as an address
    (reply,) = await sms_sent(ctx)
    assert reply["to"] == "+821022223333" and sr.service_request_id in reply["body"]
    assert reply["contact_id"] == job["contact_id"] and "도로 파손 신고" in reply["body"]
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        ctx.settings.web.public_url = base
        async with http.get(f"{base}/open311/v2/requests/{sr.service_request_id}.json") as resp:
            (doc,) = await resp.json()
        # media_url was made with the configured public_url at creation time: fetch its path here.
        path = doc["media_url"].split("/open311/v2/", 1)[1]
        async with http.get(f"{base}/open311/v2/{path}") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/jpeg"
            assert await resp.read() == PHOTO
        async with http.get(f"{base}/open311/v2/media/not-a-key.jpg") as resp:
            assert resp.status == 404
    assert doc["media_url"].endswith(".jpg") and len(path) > 30  # unguessable key
    errors = list(REQUESTS.iter_errors([doc]))
    assert not errors, errors


async def test_sms_keywords_languages_and_locations(ctx: AppContext) -> None:
    jobs = [
        await store_message(ctx, "+82 10 1000 0001", "#noise 3층에서 파티 중"),
        await store_message(ctx, "+82 10 1000 0002", "噪音很大，楼上一直在装修", language="zh"),
        await store_message(ctx, "+82 10 1000 0003", "parking 37.5665, 126.9780 blocking hydrant", language="en"),
        await store_message(ctx, "+82 10 1000 0004", "버스 막차 시간이 궁금해요"),  # a question, not a request
    ]
    sns = await store_message(ctx, "+82 10 1000 0005", "#noise from an SNS account")
    jobs.append({**sns, "channel": "sns", "sender": "kakao-user-1"})  # SNS threads stay with agents
    await confirm_reports(ctx, jobs)
    made = await requests_of(ctx)
    # The report rules are Korean and English: the Chinese message is left to an agent.
    assert [(sr.service_code, sr.source) for sr in made] == [("noise", "sms"), ("illegal_parking", "sms")]
    # Required attributes cannot come by SMS: the request is filed without them for an agent.
    assert made[0].attributes == {} and made[0].description == "3층에서 파티 중"
    assert (made[1].lat, made[1].long) == (37.5665, 126.978)
    replies = await sms_sent(ctx)
    assert [r["to"] for r in replies] == ["+821010000001", "+821010000003"]
    assert "접수번호" in replies[0]["body"] and "Tracking number" in replies[1]["body"]


async def test_replayed_and_bad_jobs(ctx: AppContext) -> None:
    job = await store_message(ctx, "010-3333-4444", "", PHOTO)
    assert len(await confirm_reports(ctx, [job, job])) == 1  # a replay: asked once
    assert len(await requests_of(ctx)) == 1
    assert len(await sms_sent(ctx)) == 1
    # Bad jobs are logged and acked; the stream goes on with the next one.
    good = await store_message(ctx, "010-3333-5555", "light 가로등이 꺼졌어요")
    await confirm_reports(ctx, [{"body": "#noise", "contact_id": 1}, {"message_id": "x", "contact_id": "abc",
                                                                       "body": "#noise"}, good])
    made = await requests_of(ctx)
    assert [sr.service_code for sr in made] == ["street_condition", "street_light"]
    async with ctx.db.session() as session:
        kinds = Counter((await session.execute(select(ContactEvent.kind))).scalars())
    # on each report's timeline: the question asked, the citizen's answer, the request created
    assert kinds == {"open311.proposed": 2, "open311.answered": 2, "open311.created": 2}
