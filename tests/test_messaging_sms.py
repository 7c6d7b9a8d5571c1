"""SMS/MMS end to end over real HTTP against the real database (SQLite and PostgreSQL):
signed webhooks, threading, photos, idempotent retries, acknowledgement, outbound replies
through a real local gateway, delivery statuses, forged requests, limits and JSON errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from ivr import records
from ivr.context import AppContext
from ivr.db.models import Channel, Citizen, Contact, ContactEvent, Media, Message
from ivr.messaging.outbound import MessagingService
from ivr.messaging.providers.generic import GENERIC_ID_LENGTH, SNS_ID_LENGTH, generic_signature
from ivr.messaging.providers.twilio import SID_LENGTH, TWILIO_HEADER, twilio_signature
from ivr.messaging.store import INBOUND_STREAM, OUTBOUND_STREAM
from tests.support.messaging import (
    LocalGateway,
    messaging_context,
    png_bytes,
    post_signed,
    post_twilio,
    sign_in,
)
from tests.support.web import serve

SECRET = "test-webhook-secret"


@pytest.fixture
async def ctx(db_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    async with messaging_context(db_url, tmp_path / "var", SECRET) as context:
        yield context


async def _jobs(ctx: AppContext, stream: str) -> list[dict[str, Any]]:
    jobs = await ctx.bus.consume(stream, "test-reader", "t", count=100, block=0.01)
    return [j.data for j in jobs]


async def _count(ctx: AppContext, model: Any) -> int:
    async with ctx.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _wait_for(predicate: Any, tries: int = 200) -> None:
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_inbound_sms_threads_acks_replies_and_tracks_delivery(ctx: AppContext) -> None:
    async with LocalGateway().run() as gateway, serve(ctx) as base, aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        ctx.settings.sms.outbound_url = gateway.url + "/send"
        resp = await post_signed(http, f"{base}/webhooks/sms", {
            "message_id": "gw-in-1", "from": "+82 10-1234-5678", "to": "120", "body": "가로등이 꺼졌어요"}, SECRET)
        assert resp.status == 200
        received = await resp.json()
        assert received["duplicate"] is False and received["new_contact"] is True
        assert len(received["tracking_number"]) == 12

        async with ctx.db.session() as session:
            contact = await session.get(Contact, received["contact_id"])
            citizen = await session.get(Citizen, contact.citizen_id)
            message = await session.get(Message, received["message_id"])
        assert contact.channel == Channel.sms and contact.tracking_number == received["tracking_number"]
        assert (citizen.identity_kind, citizen.identity) == ("phone", "+821012345678")
        assert (message.direction, message.body, message.provider) == ("in", "가로등이 꺼졌어요", "generic")
        async with ctx.db.session() as session:
            kinds = (await session.execute(select(ContactEvent.kind).where(
                ContactEvent.contact_id == contact.id).order_by(ContactEvent.id))).scalars().all()
        assert kinds == ["sms_in", "handed_off"]

        inbound = await _jobs(ctx, INBOUND_STREAM)
        assert inbound == [{"contact_id": contact.id, "message_id": message.id, "channel": "sms",
                            "sender": "+821012345678", "body": "가로등이 꺼졌어요", "media": []}]

        # The messaging service sends the automatic acknowledgement through the gateway.
        service = MessagingService(ctx)
        await service.start()
        try:
            await _wait_for(lambda: _async(len(gateway.sent) >= 1))
            ack = gateway.sent[0]
            assert ack["to"] == "+821012345678" and received["tracking_number"] in ack["body"]
            assert gateway.headers[0]["X-Dasan-Signature"].startswith("sha256=")

            # A second message of the same citizen threads onto the same contact, no second ack.
            resp = await post_signed(http, f"{base}/webhooks/sms", {
                "message_id": "gw-in-2", "from": "+82-10-1234-5678", "body": "종로구 세종대로 1"}, SECRET)
            second = await resp.json()
            assert second["contact_id"] == contact.id and second["new_contact"] is False

            # An agent replies on the contact; the service sends it through the gateway.
            csrf = await sign_in(http, base, ctx)
            async with http.post(f"{base}/api/messaging/contacts/{contact.id}/reply",
                                 json={"body": "담당 부서에 전달했습니다."}, headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 202, await r.text()
                reply_id = (await r.json())["message_id"]
            await _wait_for(lambda: _async(len(gateway.sent) >= 2))
            assert gateway.sent[1]["body"] == "담당 부서에 전달했습니다." and gateway.sent[1]["to"] == "+821012345678"
            assert gateway.sent[1]["status_callback"].endswith("/webhooks/sms/status")
        finally:
            await service.stop()
        async with ctx.db.session() as session:
            reply = await session.get(Message, reply_id)
        assert (reply.status, reply.provider, reply.provider_message_id) == ("sent", "generic", "gw-2")

        # Delivery status callbacks move the status forward only.
        resp = await post_signed(http, f"{base}/webhooks/sms/status",
                                 {"message_id": "gw-2", "status": "delivered"}, SECRET)
        assert resp.status == 200 and (await resp.json()) == {"message_id": reply_id, "status": "delivered"}
        resp = await post_signed(http, f"{base}/webhooks/sms/status", {"message_id": "gw-2", "status": "sent"}, SECRET)
        assert (await resp.json())["status"] == "delivered"
        resp = await post_signed(http, f"{base}/webhooks/sms/status", {"message_id": "nope", "status": "sent"}, SECRET)
        assert resp.status == 404 and (await resp.json())["error"] == "no message with that message_id"
        # The gateway's error text is kept on the timeline with the status it came with.
        resp = await post_signed(http, f"{base}/webhooks/sms/status",
                                 {"message_id": "gw-2", "status": "undelivered", "error": "30003 handset off"}, SECRET)
        assert resp.status == 200
        async with ctx.db.session() as session:
            statuses = [(e.data["status"], e.data["error"]) for e in (await session.execute(
                select(ContactEvent).where(ContactEvent.kind == "sms_status").order_by(ContactEvent.id))).scalars()]
        assert statuses[-1] == ("undelivered", "30003 handset off")

        # The agent sees the whole thread on the contact.
        async with http.get(f"{base}/api/messaging/contacts/{contact.id}/messages") as r:
            thread = await r.json()
        assert [m["direction"] for m in thread["messages"]] == ["in", "out", "in", "out"]
        assert thread["messages"][1]["body"] == ack["body"]


async def _async(value: bool) -> bool:
    return value


async def test_sms_threads_onto_the_open_voice_contact(ctx: AppContext) -> None:
    async with ctx.db.transaction() as session:
        citizen = await records.get_or_create_citizen(session, "phone", "+82-10-5555-0001")
        voice = await records.open_contact(session, Channel.voice, citizen, call_id="1700000000.1")
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        resp = await post_signed(http, f"{base}/webhooks/sms", {
            "message_id": "m-voice", "from": "+821055550001", "body": "아까 전화한 건 사진 보냅니다"}, SECRET)
        received = await resp.json()
    assert received["contact_id"] == voice.id and received["tracking_number"] == voice.tracking_number
    assert received["new_contact"] is False
    assert await _jobs(ctx, OUTBOUND_STREAM) == []  # the inquiry already has its tracking number


async def test_duplicate_deliveries_are_stored_once(ctx: AppContext) -> None:
    payload = {"message_id": "retry-1", "from": "01099990000", "body": "중복"}
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        responses = await asyncio.gather(*[post_signed(http, f"{base}/webhooks/sms", payload, SECRET)
                                           for _ in range(5)])
        later = await post_signed(http, f"{base}/webhooks/sms", payload, SECRET)
        bodies = [await r.json() for r in [*responses, later]]
    assert all(r.status == 200 for r in [*responses, later])
    assert len({b["message_id"] for b in bodies}) == 1
    assert sum(not b["duplicate"] for b in bodies) == 1
    assert await _count(ctx, Message) == 1 and await _count(ctx, Contact) == 1
    assert len(await _jobs(ctx, INBOUND_STREAM)) == 1
    assert len(await _jobs(ctx, OUTBOUND_STREAM)) == 1  # one acknowledgement


async def test_forged_or_unsigned_requests_are_refused(ctx: AppContext) -> None:
    payload = {"message_id": "f-1", "from": "01011112222", "body": "forged"}
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        forged = await post_signed(http, f"{base}/webhooks/sms", payload, "wrong-secret")
        unsigned = await post_signed(http, f"{base}/webhooks/sms", payload, SECRET, signature="")
        sns = await post_signed(http, f"{base}/webhooks/sns/kakao", {"message_id": "s", "from": "u"}, "nope")
        form = {"MessageSid": "SM1", "From": "+15550001111", "Body": "forged"}
        twilio = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, "wrong-token")
        # Signed for another URL: Twilio's signature covers the URL too.
        elsewhere = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET,
                                      signature=twilio_signature(
                                          SECRET, "https://evil.example/webhooks/twilio/sms", form.items()))
        assert forged.status == 403 and (await forged.json())["error"].startswith("signature does not match")
        assert unsigned.status == 401 and sns.status == 403
        assert (await unsigned.json())["error"] == "missing X-Dasan-Signature signature"
        assert twilio.status == 403 and elsewhere.status == 403
        assert twilio.content_type == "application/json"
    assert await _count(ctx, Message) == 0 and await _count(ctx, Citizen) == 0


async def test_mms_photo_is_stored_beside_the_contact_with_limits(ctx: AppContext) -> None:
    ctx.settings.sms.max_media_bytes = 50_000
    photo = png_bytes(4, 4)
    media = [
        {"content_type": "image/png", "data": base64.b64encode(photo).decode()},
        {"content_type": "image/jpeg", "data": base64.b64encode(b"#!/bin/sh\nrm -rf /\n").decode()},
        {"content_type": "image/png", "data": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 60_000).decode()},
    ]
    async with serve(ctx) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await post_signed(http, f"{base}/webhooks/sms", {
            "message_id": "mms-1", "from": "01077778888", "body": "여기 포트홀", "media": media}, SECRET)
        assert resp.status == 200, await resp.text()
        received = await resp.json()
        assert len(received["rejected_media"]) == 2
        assert "only JPEG, PNG and GIF" in received["rejected_media"][0]
        assert "limit is 50000" in received["rejected_media"][1]
        async with ctx.db.session() as session:
            rows = (await session.execute(select(Media))).scalars().all()
            message = await session.get(Message, received["message_id"])
            contact = await session.get(Contact, received["contact_id"])
        assert message.channel == Channel.mms and contact.channel == Channel.mms
        assert len(rows) == 1
        stored = rows[0]
        assert stored.path == f"media/{contact.id}/{message.id}-1.png"
        on_disk = ctx.settings.data_dir / stored.path
        assert on_disk.read_bytes() == photo and stored.sha256 == hashlib.sha256(photo).hexdigest()
        assert sorted(p.name for p in on_disk.parent.iterdir()) == [f"{message.id}-1.png"]
        assert (await _jobs(ctx, INBOUND_STREAM))[0]["media"] == [{"path": stored.path, "content_type": "image/png"}]

        async with http.get(f"{base}/api/messaging/media/{stored.id}") as r:
            assert r.status == 401
        await sign_in(http, base, ctx)
        async with http.get(f"{base}/api/messaging/media/{stored.id}") as r:
            assert r.status == 200 and r.content_type == "image/png" and await r.read() == photo

        bad = await post_signed(http, f"{base}/webhooks/sms", {
            "message_id": "mms-2", "from": "01077778888", "media": [{"content_type": "image/png", "data": "%%%"}]},
            SECRET)
        assert bad.status == 400 and (await bad.json())["error"] == "media 1: data is not base64"


async def test_twilio_webhook_mms_status_and_outbound(ctx: AppContext) -> None:
    photo = png_bytes()
    async with LocalGateway().run() as gateway, serve(ctx) as base, aiohttp.ClientSession() as http:
        ctx.settings.sms.provider = "twilio"
        ctx.settings.sms.twilio_api_base = gateway.url
        ctx.settings.sms.twilio_account_sid = "AC" + "1" * 32
        media_path = f"/2010-04-01/Accounts/{ctx.settings.sms.twilio_account_sid}/Messages/MM1/Media/ME1"
        gateway.media[media_path] = (photo, "image/png")
        form = {"MessageSid": "MM" + "a" * 32, "AccountSid": ctx.settings.sms.twilio_account_sid,
                "From": "+821033334444", "To": "+8220120", "Body": "사진", "NumMedia": "2",
                "MediaUrl0": gateway.url + media_path, "MediaContentType0": "image/png",
                "MediaUrl1": "http://127.0.0.2:9/elsewhere.png", "MediaContentType1": "image/png"}
        resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET)
        assert resp.status == 200 and "<Response>" in await resp.text()
        again = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET)
        assert again.status == 200
        async with ctx.db.session() as session:
            message = (await session.execute(select(Message))).scalar_one()
            media = (await session.execute(select(Media))).scalar_one()
        assert (message.provider, message.provider_message_id, message.channel) == ("twilio", "MM" + "a" * 32, Channel.mms)
        assert message.data["media_errors"] == ["photo 2: media URL is not on the provider's host"]
        assert (ctx.settings.data_dir / media.path).read_bytes() == photo

        service = MessagingService(ctx)
        await service.start()
        try:
            await _wait_for(lambda: _async(len(gateway.sent) >= 1))
        finally:
            await service.stop()
        sent = gateway.sent[0]
        assert sent["To"] == "+821033334444" and sent["From"] == ctx.settings.sms.sender_number
        assert sent["StatusCallback"].endswith("/webhooks/twilio/status")
        expected_auth = "Basic " + base64.b64encode(f"{ctx.settings.sms.twilio_account_sid}:{SECRET}".encode()).decode()
        assert gateway.headers[0]["Authorization"] == expected_auth
        sid = f"SM{1:032d}"
        assert len(gateway.sent) == 1, gateway.sent
        status = await post_twilio(http, f"{base}/webhooks/twilio/status",
                                   {"MessageSid": sid, "MessageStatus": "delivered"}, SECRET)
        assert status.status == 200
        async with ctx.db.session() as session:
            ack = (await session.execute(select(Message).where(Message.direction == "out"))).scalar_one()
            events = (await session.execute(select(ContactEvent.kind).where(
                ContactEvent.contact_id == ack.contact_id).order_by(ContactEvent.id))).scalars().all()
        assert (ack.provider_message_id, ack.status) == (sid, "delivered")
        assert events == ["mms_in", "handed_off", "sms_out", "sms_status"]

        # Twilio's older field names (SmsSid, SmsStatus) are read too; its ErrorCode is kept.
        status = await post_twilio(http, f"{base}/webhooks/twilio/status",
                                   {"SmsSid": sid, "SmsStatus": "undelivered", "ErrorCode": "30003"}, SECRET)
        assert status.status == 200 and "<Response>" in await status.text()
        # Without an id or without a status there is nothing to record (said, not a 404).
        for partial in ({"MessageSid": sid}, {"MessageStatus": "read"}, {"SmsStatus": "read"}):
            refused = await post_twilio(http, f"{base}/webhooks/twilio/status", partial, SECRET)
            assert refused.status == 400, partial
            assert (await refused.json())["error"] == "MessageSid and MessageStatus are required"
        unknown = await post_twilio(http, f"{base}/webhooks/twilio/status",
                                    {"MessageSid": "SM" + "9" * 32, "MessageStatus": "read"}, SECRET)
        assert unknown.status == 404
        async with ctx.db.session() as session:
            statuses = [(e.data["status"], e.data["error"]) for e in (await session.execute(
                select(ContactEvent).where(ContactEvent.kind == "sms_status").order_by(ContactEvent.id))).scalars()]
        assert statuses == [("delivered", None), ("undelivered", "Twilio error 30003")]


async def test_gateway_trouble_keeps_the_job_until_it_is_sent(ctx: AppContext) -> None:
    async with LocalGateway().run() as gateway:
        gateway.fail_next = 1
        ctx.settings.sms.outbound_url = gateway.url + "/send"
        await ctx.bus.enqueue(OUTBOUND_STREAM, {"to": "010-2222-3333", "body": "야간 콜백 안내"})
        service = MessagingService(ctx)
        await service.start()
        try:
            await _wait_for(lambda: _async(gateway.fail_next == 0))

            async def retrying() -> bool:
                async with ctx.db.session() as session:
                    rows = (await session.execute(select(Message))).scalars().all()
                return [m.status for m in rows] == ["retrying"]

            await _wait_for(retrying)
            assert gateway.sent == [] and await ctx.bus.pending(OUTBOUND_STREAM, "messaging") == 1
            # The pending job is claimed again and sent once the gateway is back.
            stale = await ctx.bus.claim_stale(OUTBOUND_STREAM, "messaging", service.consumer, 0.0)
            for item in stale:
                await service.handle(item)
        finally:
            await service.stop()
    assert [s["body"] for s in gateway.sent] == ["야간 콜백 안내"]
    async with ctx.db.session() as session:
        rows = (await session.execute(select(Message))).scalars().all()
    assert [(m.status, m.provider_message_id) for m in rows] == [("sent", "gw-1")]


async def test_limits_and_json_errors(ctx: AppContext) -> None:
    ctx.settings.web.rate_limit_per_minute = 3
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(4):
            async with http.get(f"{base}/api/messaging/chats") as r:
                statuses.append(r.status)
                last = (r.headers.get("Retry-After"), await r.json())
        assert statuses == [401, 401, 401, 429]
        assert last[0] is not None and last[1] == {"error": "too many requests; slow down"}
        big = b"{" + b" " * (300 * 1024) + b"}"
        async with http.post(f"{base}/api/messaging/contacts/1/reply", data=big,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413 and "limit is 262144" in (await r.json())["error"]
        async with http.post(f"{base}/webhooks/sms", data=b"not json",
                             headers={"X-Dasan-Signature": "sha256=00"}) as r:
            assert r.status == 403 and r.content_type == "application/json"
        async with http.get(f"{base}/webhooks/sms") as r:
            assert r.status == 405 and (await r.json())["error"] == "Method Not Allowed" and "POST" in r.headers["Allow"]
        async with http.get(f"{base}/api/no-such-thing") as r:
            assert r.status == 404 and (await r.json()) == {"error": "Not Found"}
        raw = b'{"message_id": "", "from": "x"}'
        async with http.post(f"{base}/webhooks/sms", data=raw,
                             headers={"X-Dasan-Signature": generic_signature(SECRET, raw)}) as r:
            error = await r.json()
        assert r.status == 400 and {d["field"] for d in error["details"]} == {"message_id", "from"}


async def test_twilio_send_under_a_base_url_with_a_trailing_slash() -> None:
    # sms.twilio_api_base may be written with a trailing "/": the Messages resource is still
    # /2010-04-01/Accounts/<sid>/Messages.json (not "//2010-..."), and the form carries the body.
    from ivr.messaging.providers.base import Outgoing
    from ivr.messaging.providers.twilio import TwilioProvider

    sid = "AC" + "7" * 32
    async with LocalGateway().run() as gateway, aiohttp.ClientSession() as http:
        provider = TwilioProvider(gateway.url + "/", sid, SECRET, "+8220120", http)
        result = await provider.send(Outgoing("+821055556666", "접수되었습니다"))
    assert (result.provider_message_id, result.status) == (f"SM{1:032d}", "queued")
    assert gateway.sent == [{"To": "+821055556666", "From": "+8220120", "Body": "접수되었습니다"}]


@pytest.mark.parametrize("provider_name", ["twilio", "generic"])
async def test_a_gateway_answer_of_300_or_more_is_an_error_that_says_whether_to_retry(provider_name: str) -> None:
    # 3xx is not "sent" either (a redirect the client did not follow); 408, 429 and 5xx may
    # pass if tried later, any other refusal will not. The error quotes the gateway's first 200
    # characters.
    from aiohttp import web

    from ivr.messaging.providers.base import Outgoing, ProviderError
    from ivr.messaging.providers.generic import GenericHttpProvider
    from ivr.messaging.providers.twilio import TwilioProvider
    from tests.support.web import serve_app

    answers: list[tuple[int, str]] = []

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        status, text = answers.pop(0)
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    refusal = "잘못된 번호 " + "x" * 300
    async with serve_app(app) as url, aiohttp.ClientSession() as http:
        provider = (TwilioProvider(url, "AC" + "7" * 32, SECRET, "+8220120", http) if provider_name == "twilio"
                    else GenericHttpProvider(url + "/send", SECRET, "+8220120", http))
        label = "Twilio" if provider_name == "twilio" else "gateway"
        for status, retryable in ((300, False), (400, False), (404, False), (408, True), (429, True),
                                  (500, True), (503, True)):
            answers.append((status, refusal))
            with pytest.raises(ProviderError) as caught:
                await provider.send(Outgoing("+821055556666", "접수되었습니다"))
            assert str(caught.value) == f"{label} answered {status}: {refusal[:200]}"
            assert caught.value.retryable is retryable, status
        # What the gateway says it did is what is recorded; an answer without it gets the default.
        idkey, default = ("sid", "queued") if provider_name == "twilio" else ("message_id", "sent")
        for text, expected in ((json.dumps({idkey: "P-1", "status": "accepted"}), ("P-1", "accepted")),
                               ("{}", (None, default))):
            answers.append((201, text))
            result = await provider.send(Outgoing("+821055556666", "접수되었습니다"))
            assert (result.provider_message_id, result.status) == expected
        answers.append((200, "<html>not JSON</html>"))
        if provider_name == "twilio":  # Twilio always answers JSON: anything else is trouble
            with pytest.raises(ProviderError) as caught:
                await provider.send(Outgoing("+821055556666", "접수되었습니다"))
            assert str(caught.value).startswith("Twilio unreachable or unreadable: ")
            assert caught.value.retryable is True
        else:  # a gateway may answer 2xx with no JSON, or JSON that is no object: sent, without its id
            result = await provider.send(Outgoing("+821055556666", "접수되었습니다"))
            assert (result.provider_message_id, result.status) == (None, "sent")
            answers.append((200, "[1, 2]"))
            result = await provider.send(Outgoing("+821055556666", "접수되었습니다"))
            assert (result.provider_message_id, result.status) == (None, "sent")
    # The server is gone now: nobody listens on its port any more.
    async with aiohttp.ClientSession() as http:
        provider = (TwilioProvider(url, "AC" + "7" * 32, SECRET, "+8220120", http) if provider_name == "twilio"
                    else GenericHttpProvider(url + "/send", SECRET, "+8220120", http))
        with pytest.raises(ProviderError) as caught:
            await provider.send(Outgoing("+821055556666", "접수되었습니다"))
    assert str(caught.value).startswith("Twilio unreachable or unreadable: " if provider_name == "twilio"
                                        else "gateway unreachable: ")
    assert caught.value.retryable is True


async def test_generic_sms_keeps_the_number_it_was_sent_to_and_its_language(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        named = await post_signed(http, f"{base}/webhooks/sms", {
            "message_id": "to-1", "from": "+821077778888", "to": "+8220120", "body": "Where is city hall?",
            "language": "en"}, SECRET)
        bare = await post_signed(http, f"{base}/webhooks/sms", {
            "message_id": "to-2", "from": "+821099990000", "body": "시청 위치"}, SECRET)
        assert named.status == 200 and bare.status == 200
    async with ctx.db.session() as session:
        rows = {m.provider_message_id: (m.data.get("to", "absent"), c.language) for m, c in (await session.execute(
            select(Message, Contact).join(Contact, Contact.id == Message.contact_id)
            .where(Message.direction == "in"))).all()}
    assert rows == {"to-1": ("+8220120", "en"), "to-2": ("absent", "ko")}


async def test_generic_send_posts_every_field_the_gateway_needs() -> None:
    from ivr.config import SmsSettings
    from ivr.messaging.providers.base import Outgoing
    from ivr.messaging.providers.generic import GENERIC_HEADER, build

    async with LocalGateway().run() as gateway, aiohttp.ClientSession() as http:
        # built from the settings as the messaging service builds it
        provider = build(SmsSettings(outbound_url=gateway.url + "/send", webhook_secret=SECRET,
                                     sender_number="+8220120"), http)
        await provider.send(Outgoing("kakao-user-42", "수거일은 화요일입니다", channel="sns", network="kakao",
                                     status_callback="https://city.example/webhooks/sms/status"))
        await provider.send(Outgoing("+821055556666", "접수되었습니다"))
    assert gateway.sent == [
        {"to": "kakao-user-42", "from": "+8220120", "body": "수거일은 화요일입니다", "channel": "sns",
         "network": "kakao", "status_callback": "https://city.example/webhooks/sms/status"},
        {"to": "+821055556666", "from": "+8220120", "body": "접수되었습니다", "channel": "sms"}]
    assert [h[GENERIC_HEADER] for h in gateway.headers] == [generic_signature(SECRET, raw) for raw in gateway.raw]
    assert "접수되었습니다".encode() in gateway.raw[1]  # UTF-8 as is, not \uXXXX escapes


async def test_twilio_media_follows_five_redirects_with_the_api_credentials_and_no_sixth(ctx: AppContext) -> None:
    from aiohttp import web

    from tests.support.web import serve_app

    photo = png_bytes()
    seen_auth: list[str | None] = []

    async def media(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        seen_auth.append(request.headers.get("Authorization"))
        if hops > 0:
            raise web.HTTPFound(f"/media/{hops - 1}")
        return web.Response(body=photo, content_type="image/png")

    async def odd(request: web.Request) -> web.Response:
        return web.Response(status=302 if request.path == "/nowhere" else 404)  # a redirect without Location

    app = web.Application()
    app.router.add_get("/media/{hops}", media)
    app.router.add_get("/nowhere", odd)
    app.router.add_get("/gone", odd)
    ctx.settings.sms.max_media_bytes = len(photo)  # exactly as large as allowed: kept whole
    async with serve_app(app) as api, serve(ctx) as base, aiohttp.ClientSession() as http:
        ctx.settings.sms.provider = "twilio"
        ctx.settings.sms.twilio_api_base = api
        ctx.settings.sms.twilio_account_sid = "AC" + "2" * 32
        form = {"MessageSid": "MM" + "b" * 32, "From": "+821033334444", "To": "+8220120", "Body": "사진 두 장",
                "NumMedia": "4", "MediaUrl0": f"{api}/media/5", "MediaUrl1": f"{api}/media/6",
                "MediaUrl2": f"{api}/nowhere", "MediaUrl3": f"{api}/gone"}
        resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET)
        # Twilio reads the answer as TwiML: an empty <Response> says "no reply from here".
        assert resp.status == 200 and resp.content_type == "text/xml"
        assert await resp.text() == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
        unknown = await post_twilio(http, f"{base}/webhooks/twilio/status",
                                    {"MessageSid": "SM" + "8" * 32, "MessageStatus": "read"}, SECRET)
        assert unknown.status == 404 and (await unknown.json())["error"] == "no message with that MessageSid"
    async with ctx.db.session() as session:
        message = (await session.execute(select(Message))).scalar_one()
        media_rows = (await session.execute(select(Media))).scalars().all()
    assert message.data["media_errors"] == ["photo 2: media URL redirected more than 5 times",
                                            "photo 3: media URL answered 302 without a Location",
                                            "photo 4: media URL answered 404"]
    assert [(ctx.settings.data_dir / m.path).read_bytes() for m in media_rows] == [photo]
    basic = "Basic " + base64.b64encode(f"{'AC' + '2' * 32}:{SECRET}".encode()).decode()
    assert seen_auth == [basic] * 12  # six hops for the first photo, six for the second


def test_twilio_media_hosts_are_https_on_443_unless_a_whole_origin_is_given() -> None:
    from ivr.config import SmsSettings
    from ivr.messaging.providers.twilio import _media_origins

    sms = SmsSettings(twilio_api_base="https://api.twilio.com",
                      media_redirect_hosts=["media.twiliocdn.com", "http://cdn.city.example:8080"])
    assert _media_origins(sms) == {("https", "api.twilio.com", 443), ("https", "media.twiliocdn.com", 443),
                                   ("http", "cdn.city.example", 8080)}


async def test_twilio_signed_for_the_public_url_written_with_a_trailing_slash(ctx: AppContext) -> None:
    # Behind a proxy Twilio signs the public address it posted to; web.public_url may end in "/".
    ctx.settings.web.public_url = "https://sms.city.example/"
    form = {"MessageSid": "SM" + "4" * 32, "MessageStatus": "delivered"}
    public = twilio_signature(SECRET, "https://sms.city.example/webhooks/twilio/status", form.items())
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        resp = await post_twilio(http, f"{base}/webhooks/twilio/status", form, SECRET, signature=public)
        assert resp.status == 404  # the signature held; there is no such message
        resp = await post_twilio(http, f"{base}/webhooks/twilio/status", form, SECRET, signature=public[:-2] + "A=")
        assert resp.status == 403


async def test_twilio_sms_needs_an_id_and_a_phone_number_within_their_lengths(ctx: AppContext) -> None:
    phone = "+82" + "1" * 37  # 40 characters: the longest sender taken
    cases = [({"SmsSid": "SM-legacy", "From": "+821012345678"}, 200, None),  # Twilio's older name
             # The longest id whose timeline keys fit contact_events.external_id (PostgreSQL
             # enforces the length: one character more was a 500 there once).
             ({"MessageSid": "S" * SID_LENGTH, "From": phone}, 200, None),
             ({"From": "+821012345678"}, 400, "MessageSid is required"),
             ({"MessageSid": "S" * (SID_LENGTH + 1), "From": "+821012345678"}, 400,
              f"MessageSid is longer than {SID_LENGTH} characters"),
             ({"MessageSid": "SM-2"}, 400, "From must be a phone number"),
             ({"MessageSid": "SM-3", "From": phone + "1"}, 400, "From must be a phone number"),
             ({"MessageSid": "SM-4", "From": "anonymous"}, 400, "From must be a phone number")]
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        for form, status, error in cases:
            resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", {**form, "Body": "문의"}, SECRET)
            assert resp.status == status, form
            if error is not None:
                assert (await resp.json())["error"] == error, form
    async with ctx.db.session() as session:
        stored = sorted((await session.execute(select(Message.provider_message_id))).scalars())
        keys = set((await session.execute(select(ContactEvent.external_id))).scalars())
    assert SID_LENGTH == 165 and stored == sorted(["S" * SID_LENGTH, "SM-legacy"])  # nothing of the refused
    assert f"message:twilio:{'S' * SID_LENGTH}" in keys and await _count(ctx, Contact) == 2
    async with serve(ctx) as base, aiohttp.ClientSession() as http:  # statuses of the longest id fit too
        resp = await post_twilio(http, f"{base}/webhooks/twilio/status",
                                 {"MessageSid": "S" * SID_LENGTH, "MessageStatus": "x" * 20}, SECRET)
        assert resp.status == 200
        resp = await post_twilio(http, f"{base}/webhooks/twilio/status",
                                 {"MessageSid": "S" * (SID_LENGTH + 1), "MessageStatus": "read"}, SECRET)
        assert resp.status == 404  # no message of ours has an id that long
    async with ctx.db.session() as session:
        keys = set((await session.execute(select(ContactEvent.external_id))).scalars())
    assert f"status:twilio:{'S' * SID_LENGTH}:{'x' * 20}" in keys


async def test_generic_and_sns_ids_are_refused_past_what_the_timeline_stores(ctx: AppContext) -> None:
    # The longest id is stored (with its status key on the generic route); one more character
    # is a 400 naming the field, and nothing is written.
    assert (GENERIC_ID_LENGTH, SNS_ID_LENGTH) == (164, 151)
    network = "n" * 16  # the longest network name the route takes
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        for url, longest, extra in ((f"{base}/webhooks/sms", GENERIC_ID_LENGTH, {"from": "+821012345678"}),
                                    (f"{base}/webhooks/sns/{network}", SNS_ID_LENGTH, {"from": "user-1"})):
            resp = await post_signed(http, url, {"message_id": "M" * (longest + 1), **extra, "body": "x"}, SECRET)
            assert resp.status == 400, url
            assert "message_id" in (await resp.json())["error"], url
            resp = await post_signed(http, url, {"message_id": "M" * longest, **extra, "body": "x"}, SECRET)
            assert resp.status == 200, url
        resp = await post_signed(http, f"{base}/webhooks/sms/status",
                                 {"message_id": "M" * GENERIC_ID_LENGTH, "status": "x" * 20}, SECRET)
        assert resp.status == 200
        resp = await post_signed(http, f"{base}/webhooks/sms/status",
                                 {"message_id": "M" * (GENERIC_ID_LENGTH + 1), "status": "read"}, SECRET)
        assert resp.status == 400 and "message_id" in (await resp.json())["error"]
    async with ctx.db.session() as session:
        stored = sorted((await session.execute(select(Message.provider, Message.provider_message_id))).all())
        keys = set((await session.execute(select(ContactEvent.external_id))).scalars())
    assert stored == [("generic", "M" * GENERIC_ID_LENGTH), (f"sns:{network}", "M" * SNS_ID_LENGTH)]
    assert {f"message:generic:{'M' * GENERIC_ID_LENGTH}", f"message:sns:{network}:{'M' * SNS_ID_LENGTH}",
            f"status:generic:{'M' * GENERIC_ID_LENGTH}:{'x' * 20}"} <= keys
    assert await _count(ctx, Contact) == 2


async def test_twilio_sms_with_a_nummedia_that_is_no_number_is_refused(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        resp = await post_twilio(http, f"{base}/webhooks/twilio/sms",
                                 {"MessageSid": "SM-n", "From": "+821012345678", "NumMedia": "two"}, SECRET)
        assert (resp.status, (await resp.json())["error"]) == (400, "NumMedia must be a number")


TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def _twilio_messages(ctx: AppContext) -> dict[str, tuple[str, str, dict[str, Any], list[str]]]:
    """provider_message_id -> (sender, body, data, paths of its stored photos)."""
    async with ctx.db.session() as session:
        messages = (await session.execute(select(Message).where(Message.direction == "in"))).scalars().all()
        photos = (await session.execute(select(Media.message_id, Media.path).order_by(Media.id))).all()
    return {m.provider_message_id: (m.sender, m.body, m.data, [p for mid, p in photos if mid == m.id])
            for m in messages}


async def test_twilio_sms_keeps_the_text_and_the_number_texted_as_twilio_sent_them(ctx: AppContext) -> None:
    # Every parameter of Twilio's incoming-message webhook for a text without photos (Twilio's
    # "Messaging webhooks" reference: SmsSid and SmsMessageSid repeat MessageSid, NumMedia "0").
    sid = "SM" + "c" * 32
    full = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "",
            "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received", "FromCity": "",
            "Body": "Ahoy! The streetlight on Main St is out.", "FromCountry": "US", "To": "+15017122661",
            "ToZip": "", "NumSegments": "1", "MessageSid": sid, "AccountSid": "AC" + "3" * 32,
            "From": "+15558675310", "ApiVersion": "2010-04-01"}
    bare = {"MessageSid": "SM" + "d" * 32, "From": "+821044445555"}  # neither To nor Body
    long = {"MessageSid": "SM" + "e" * 32, "From": "+821066667777", "To": "+8220120", "Body": "가" * 5001}
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        for form in (full, bare, long):
            resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET)
            assert (resp.status, resp.content_type, await resp.text()) == (200, "text/xml", TWIML_EMPTY), form
    assert await _twilio_messages(ctx) == {
        sid: ("+15558675310", "Ahoy! The streetlight on Main St is out.",
              {"to": "+15017122661", "new_contact": True, "rejected_media": []}, []),
        "SM" + "d" * 32: ("+821044445555", "", {"to": "", "new_contact": True, "rejected_media": []}, []),
        # the text is kept to its first 5,000 characters
        "SM" + "e" * 32: ("+821066667777", "가" * 5000,
                          {"to": "+8220120", "new_contact": True, "rejected_media": []}, [])}
    async with ctx.db.session() as session:
        citizens = sorted((await session.execute(select(Citizen.identity_kind, Citizen.identity))).all())
    assert citizens == [("phone", "+15558675310"), ("phone", "+821044445555"), ("phone", "+821066667777")]


def _media_server(photo: bytes, fetched: list[str]) -> Any:
    from aiohttp import web

    async def media(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        fetched.append(name)
        if name == "big":  # a PNG far over the limit the test sets
            return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"0" * 5000, content_type="image/png")
        # "as-jpeg": a PNG whose server claims it is a JPEG
        return web.Response(body=photo, content_type="image/jpeg" if name == "as-jpeg" else "image/png")

    app = web.Application()
    app.router.add_get("/media/{name}", media)
    return app


async def test_twilio_sms_fetches_the_photos_numbered_below_nummedia_and_at_most_twenty(ctx: AppContext) -> None:
    from tests.support.web import serve_app

    photo = png_bytes()
    fetched: list[str] = []
    async with serve_app(_media_server(photo, fetched)) as api, serve(ctx) as base, \
            aiohttp.ClientSession() as http:
        ctx.settings.sms.twilio_api_base = api
        forms = [
            # no NumMedia: no photos, whatever MediaUrl0 says
            {"MessageSid": "MM-none", "From": "+821011110001", "To": "+8220120", "MediaUrl0": f"{api}/media/n0"},
            # NumMedia over 20 is read as 20: MediaUrl0 to MediaUrl19
            {"MessageSid": "MM-many", "From": "+821011110002", "To": "+8220120", "NumMedia": "21",
             "MediaUrl19": f"{api}/media/m19", "MediaUrl20": f"{api}/media/m20"},
            # a MediaUrl missing between photos: the ones after it are still fetched
            {"MessageSid": "MM-gap", "From": "+821011110003", "To": "+8220120", "NumMedia": "2",
             "MediaUrl1": f"{api}/media/g1", "MediaContentType1": "image/png"},
        ]
        for form in forms:
            resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", {**form, "Body": "사진"}, SECRET)
            assert (resp.status, await resp.text()) == (200, TWIML_EMPTY), form
    assert fetched == ["m19", "g1"]
    stored = await _twilio_messages(ctx)
    assert {sid: (data, len(paths)) for sid, (_s, _b, data, paths) in stored.items()} == {
        "MM-none": ({"to": "+8220120", "new_contact": True, "rejected_media": []}, 0),
        "MM-many": ({"to": "+8220120", "new_contact": True, "rejected_media": []}, 1),
        "MM-gap": ({"to": "+8220120", "new_contact": True, "rejected_media": []}, 1)}
    assert [(ctx.settings.data_dir / stored[sid][3][0]).read_bytes() for sid in ("MM-many", "MM-gap")] == [photo] * 2


async def test_twilio_photos_are_checked_against_their_claimed_type_and_read_no_further_than_the_limit(
        ctx: AppContext) -> None:
    from tests.support.web import serve_app

    photo = png_bytes()
    fetched: list[str] = []
    ctx.settings.sms.max_media_bytes = 100
    assert len(photo) <= 100
    async with serve_app(_media_server(photo, fetched)) as api, serve(ctx) as base, \
            aiohttp.ClientSession() as http:
        ctx.settings.sms.twilio_api_base = api
        forms = [
            {"MessageSid": "MM-checked", "From": "+821022220001", "To": "+8220120", "Body": "사진 세 장",
             "NumMedia": "3", "MediaUrl0": f"{api}/media/as-jpeg", "MediaUrl1": f"{api}/media/big",
             "MediaUrl2": "http://127.0.0.2:9/elsewhere.png"},
            {"MessageSid": "MM-no-to", "From": "+821022220002", "Body": "사진", "NumMedia": "1",
             "MediaUrl0": "http://127.0.0.2:9/elsewhere.png"},
        ]
        for form in forms:
            resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET)
            assert (resp.status, await resp.text()) == (200, TWIML_EMPTY), form
    assert fetched == ["as-jpeg", "big"]
    assert await _twilio_messages(ctx) == {
        "MM-checked": ("+821022220001", "사진 세 장", {
            "to": "+8220120", "media_errors": ["photo 3: media URL is not on the provider's host"],
            "new_contact": True,
            # the store's checks: the claimed type must be the real one; and the download
            # stops one byte past the limit (5,008 bytes served, 101 read)
            "rejected_media": ["photo 1: photo claims image/jpeg but is image/png",
                               "photo 2: photo is 101 bytes; the limit is 100"]}, []),
        "MM-no-to": ("+821022220002", "사진", {
            "to": "", "media_errors": ["photo 1: media URL is not on the provider's host"],
            "new_contact": True, "rejected_media": []}, [])}


async def test_twilio_webhooks_say_why_they_refuse_a_request(ctx: AppContext) -> None:
    form = {"MessageSid": "SM" + "f" * 32, "From": "+821012345678", "Body": "안녕하세요", "MessageStatus": "sent"}
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        for path in ("/webhooks/twilio/sms", "/webhooks/twilio/status"):
            url = base + path
            answers = []
            signed = twilio_signature(SECRET, url, form.items())
            for data, headers in ((json.dumps(form), {"Content-Type": "application/json", TWILIO_HEADER: signed}),
                                  (form, {}),  # no X-Twilio-Signature at all
                                  (form, {TWILIO_HEADER: twilio_signature("wrong-token", url, form.items())})):
                async with http.post(url, data=data, headers=headers) as resp:
                    answers.append((resp.status, resp.content_type, await resp.json()))
            assert answers == [
                (415, "application/json", {"error": "Twilio webhooks are application/x-www-form-urlencoded"}),
                (401, "application/json", {"error": "missing X-Twilio-Signature signature"}),
                (403, "application/json", {"error": "signature does not match; request refused"})], path
    assert await _count(ctx, Message) == 0 and await _count(ctx, Citizen) == 0


async def test_twilio_urls_keep_a_path_prefix_ending_in_x(ctx: AppContext) -> None:
    # Only trailing slashes are dropped from web.public_url and sms.twilio_api_base: a prefix
    # such as /PBX/ (the app behind a proxy) or /SMSBOX/ (a relay in front of Twilio) stays whole.
    from aiohttp import web

    from ivr.messaging.providers.base import Outgoing
    from ivr.messaging.providers.twilio import TwilioProvider
    from tests.support.web import serve_app

    ctx.settings.web.public_url = "https://city.example/PBX/"
    form = {"MessageSid": "SM" + "4" * 32, "MessageStatus": "delivered"}
    public = twilio_signature(SECRET, "https://city.example/PBX/webhooks/twilio/status", form.items())
    paths: list[str] = []

    async def relay(request: web.Request) -> web.Response:
        paths.append(request.path)
        return web.json_response({"sid": "SM" + "5" * 32, "status": "queued"}, status=201)

    app = web.Application()
    app.router.add_post("/{tail:.*}", relay)
    async with serve(ctx) as base, serve_app(app) as api, aiohttp.ClientSession() as http:
        resp = await post_twilio(http, f"{base}/webhooks/twilio/status", form, SECRET, signature=public)
        # the signature held; there is no such message
        assert (resp.status, await resp.json()) == (404, {"error": "no message with that MessageSid"})
        provider = TwilioProvider(api + "/SMSBOX/", "AC" + "7" * 32, SECRET, "+8220120", http)
        result = await provider.send(Outgoing("+821055556666", "접수되었습니다"))
    assert (result.provider_message_id, result.status) == ("SM" + "5" * 32, "queued")
    assert paths == [f"/SMSBOX/2010-04-01/Accounts/AC{'7' * 32}/Messages.json"]


async def test_a_twilio_photo_that_arrives_in_pieces_is_stored_whole(ctx: AppContext) -> None:
    # A photo of a few MB does not arrive in one read: the whole of it is stored, not the part
    # that had arrived when the download was first read (a PNG cut short passed the checks).
    from aiohttp import web

    from tests.support.web import serve_app

    photo = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8192  # 2 MiB and 8 bytes
    sent: list[int] = []

    async def media(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for start in range(0, len(photo), 256 * 1024):  # nine writes, each drained
            await response.write(photo[start : start + 256 * 1024])
            sent.append(start)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/media/big.png", media)
    async with serve_app(app) as api, serve(ctx) as base, aiohttp.ClientSession() as http:
        ctx.settings.sms.twilio_api_base = api
        form = {"MessageSid": "MM-whole", "From": "+821033330001", "To": "+8220120", "Body": "큰 사진",
                "NumMedia": "1", "MediaUrl0": f"{api}/media/big.png"}
        resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET)
        assert (resp.status, await resp.text()) == (200, TWIML_EMPTY)
    assert len(sent) == 9
    [(sender, body, data, paths)] = (await _twilio_messages(ctx)).values()
    assert (sender, body, data) == ("+821033330001", "큰 사진", {"to": "+8220120", "new_contact": True, "rejected_media": []})
    assert [len((ctx.settings.data_dir / p).read_bytes()) for p in paths] == [len(photo)]
    assert (ctx.settings.data_dir / paths[0]).read_bytes() == photo
