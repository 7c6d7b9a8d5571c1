"""SNS messages over real HTTP against the real database: stored on the sender's SNS
identity, the 24-hour reply deadline tracked (answered in time, late, overdue) and reported,
overdue ones marked on the timeline once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from ivr.context import AppContext
from ivr.db.models import Citizen, Contact, ContactEvent, Message
from ivr.messaging.models import SnsDeadline
from ivr.messaging.outbound import MessagingService, sweep_sns_deadlines
from ivr.messaging.store import INBOUND_STREAM, OUTBOUND_STREAM
from tests.support.messaging import messaging_context, post_signed, sign_in
from tests.support.web import serve

SECRET = "sns-secret"


@pytest.fixture
async def ctx(db_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    async with messaging_context(db_url, tmp_path / "var", SECRET) as context:
        yield context


async def test_sns_reply_deadline_is_tracked_and_reported(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        first = await post_signed(http, f"{base}/webhooks/sns/kakao", {
            "message_id": "k-1", "from": "kakao-user-42", "name": "홍길동", "body": "쓰레기 수거 문의"}, SECRET)
        assert first.status == 200
        one = await first.json()
        again = await post_signed(http, f"{base}/webhooks/sns/kakao", {
            "message_id": "k-1", "from": "kakao-user-42", "body": "쓰레기 수거 문의"}, SECRET)
        assert (await again.json())["duplicate"] is True
        other = await post_signed(http, f"{base}/webhooks/sns/x", {
            "message_id": "x-9", "from": "citizen_x", "body": "도로 파손"}, SECRET)
        two = await other.json()
        assert two["contact_id"] != one["contact_id"]
        async with ctx.db.session() as session:
            citizen = (await session.execute(select(Citizen).where(Citizen.identity == "kakao-user-42"))).scalar_one()
        assert (citizen.identity_kind, citizen.display_name) == ("sns:kakao", "홍길동")
        assert len(await ctx.bus.consume(INBOUND_STREAM, "t", "t", count=10, block=0.01)) == 2
        assert await ctx.bus.consume(OUTBOUND_STREAM, "t", "t", count=10, block=0.01) == []  # no SMS ack

        csrf = await sign_in(http, base, ctx)
        async with http.get(f"{base}/api/messaging/sns/deadlines") as r:
            report = await r.json()
        assert (report["total"], report["pending"], report["hours"]) == (2, 2, 24.0)
        due = datetime.fromisoformat(report["items"][0]["due_at"])
        received = datetime.fromisoformat(report["items"][0]["received_at"])
        assert due - received == timedelta(hours=24)

        # The x message is made 25 hours old: overdue, and marked on its timeline once.
        async with ctx.db.transaction() as session:
            row = (await session.execute(select(SnsDeadline).where(
                SnsDeadline.message_id == two["message_id"]))).scalar_one()
            row.received_at -= timedelta(hours=25)
            row.due_at -= timedelta(hours=25)
        assert await sweep_sns_deadlines(ctx) == 1
        assert await sweep_sns_deadlines(ctx) == 0

        # The agent answers the kakao message through the outbox provider (no gateway).
        async with http.post(f"{base}/api/messaging/contacts/{one['contact_id']}/reply",
                             json={"body": "수거일은 화요일입니다"}, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 202
            assert (await r.json())["channel"] == "sns"
        service = MessagingService(ctx)
        await service.start()
        try:
            for _ in range(200):
                async with ctx.db.session() as session:
                    row = (await session.execute(select(SnsDeadline).where(
                        SnsDeadline.message_id == one["message_id"]))).scalar_one()
                if row.replied_at is not None:
                    break
                await asyncio.sleep(0.05)
        finally:
            await service.stop()
        async with http.get(f"{base}/api/messaging/sns/deadlines",
                            params={"since": (datetime.now(UTC) - timedelta(days=3)).isoformat()}) as r:
            report = await r.json()
        states = {item["message_id"]: item["state"] for item in report["items"]}
        assert states == {one["message_id"]: "answered_in_time", two["message_id"]: "overdue"}
        assert (report["answered_in_time"], report["overdue"], report["pending"]) == (1, 1, 0)

        # A late answer is reported as late.
        async with http.post(f"{base}/api/messaging/contacts/{two['contact_id']}/reply",
                             json={"body": "늦어서 죄송합니다"}, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 202
        service = MessagingService(ctx)
        await service.start()
        try:
            for _ in range(200):
                async with http.get(f"{base}/api/messaging/sns/deadlines",
                                    params={"since": (datetime.now(UTC) - timedelta(days=3)).isoformat()}) as r:
                    report = await r.json()
                if report["answered_late"] == 1:
                    break
                await asyncio.sleep(0.05)
        finally:
            await service.stop()
        assert report["answered_late"] == 1 and report["overdue"] == 0
        async with http.get(f"{base}/api/messaging/outbox") as r:
            outbox = (await r.json())["messages"]
        assert [(m["channel"], m["to"], m["body"]) for m in outbox] == [
            ("sns", "citizen_x", "늦어서 죄송합니다"), ("sns", "kakao-user-42", "수거일은 화요일입니다")]
        async with http.get(f"{base}/api/messaging/sns/deadlines", params={"since": "yesterday"}) as r:
            assert r.status == 400 and "ISO 8601" in (await r.json())["error"]

    async with ctx.db.session() as session:
        replies = (await session.execute(select(Message).where(Message.direction == "out")
                                         .order_by(Message.id))).scalars().all()
        missed = (await session.execute(select(ContactEvent).where(
            ContactEvent.kind == "sns_deadline_missed"))).scalars().all()
    assert [(m.channel.value, m.status, m.provider) for m in replies] == [("sns", "outbox", "outbox")] * 2
    assert [e.contact_id for e in missed] == [two["contact_id"]]


async def test_sns_message_keeps_the_language_it_names(ctx: AppContext) -> None:
    # The relay says which language the citizen wrote in: the contact is opened in it (and
    # without one, in the site's default), not always in the default.
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        english = await post_signed(http, f"{base}/webhooks/sns/line", {
            "message_id": "l-1", "from": "line-user-7", "body": "Where do I put old furniture?",
            "language": "en"}, SECRET)
        unnamed = await post_signed(http, f"{base}/webhooks/sns/line", {
            "message_id": "l-2", "from": "line-user-8", "body": "가구 버리는 방법"}, SECRET)
        assert english.status == 200 and unnamed.status == 200
        first, second = await english.json(), await unnamed.json()
    async with ctx.db.session() as session:
        languages = {c.id: c.language for c in (await session.execute(
            select(Contact).where(Contact.id.in_([first["contact_id"], second["contact_id"]])))).scalars()}
    assert languages == {first["contact_id"]: "en", second["contact_id"]: "ko"}
