"""End to end over real sockets: an MMS with a photo (signed webhook of the messaging sidecar)
becomes a service request; a department closes it over HTTP; the citizen's SMS goes out
through the sidecar to a local gateway; a caller keys the tracking number into the real IVR
(FastAGI over TCP, scripted AGI caller) and hears the closed status."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from ivr.bus import Bus
from ivr.context import AppContext
from ivr.db import Database
from ivr.messaging.outbound import MessagingService
from ivr.open311.inbound import InboundConsumer
from ivr.open311.keys import create_key
from tests.support.ivr_harness import IvrHarness
from tests.support.messaging import LocalGateway, png_bytes, post_signed, sidecar_settings
from tests.support.open311 import schema_validator
from tests.support.web import serve

SECRET = "e2e-webhook-secret"
REQUESTS = schema_validator("requests.json")


@pytest.fixture
async def ctx(db_url: str, bus: Bus, tmp_path: Path) -> AsyncIterator[AppContext]:
    settings = sidecar_settings(db_url, tmp_path / "var")
    settings.sms.webhook_secret = SECRET
    context = AppContext(settings, Database(db_url), bus)
    yield context
    await context.db.dispose()


async def until(check: Callable[[], bool]) -> None:
    """Wait for something the services do in the background (generous limit, not a speed test)."""
    async with asyncio.timeout(60):
        while not check():  # noqa: ASYNC110  (a list the local gateway server fills)
            await asyncio.sleep(0.05)


async def test_mms_to_request_to_closed_sms_to_ivr_lookup(ctx: AppContext) -> None:
    photo = png_bytes(4, 3)
    dept_key = await create_key(ctx.db, "roads", "update", agency="Jung-gu Road Team")
    consumer = InboundConsumer(ctx)
    messaging = MessagingService(ctx)
    async with LocalGateway().run() as gateway, serve(ctx) as base, aiohttp.ClientSession() as http:
        ctx.settings.web.public_url = base
        ctx.settings.sms.outbound_url = gateway.url + "/send"
        await consumer.start()
        await messaging.start()
        try:
            # 1. The citizen's MMS arrives at the sidecar's webhook.
            resp = await post_signed(http, f"{base}/webhooks/sms", {
                "message_id": "gw-in-1", "from": "+82 10-4444-5555", "to": "120",
                "body": "pothole 세종대로 110 앞 큰 구멍", "language": "ko",
                "media": [{"content_type": "image/png", "data": base64.b64encode(photo).decode()}]}, SECRET)
            assert resp.status == 200
            await consumer.wait_handled(1)
            # A report is filed once the citizen confirms it by reply (issue #23).
            await until(lambda: any("'예'" in s["body"] for s in gateway.sent))
            resp = await post_signed(http, f"{base}/webhooks/sms", {
                "message_id": "gw-in-2", "from": "+82 10-4444-5555", "to": "120", "body": "예",
                "language": "ko"}, SECRET)
            assert resp.status == 200
            await consumer.wait_handled(2)
            async with http.get(f"{base}/open311/v2/requests.json", params={"status": "open"}) as r:
                (request,) = await r.json()
            assert not list(REQUESTS.iter_errors([request]))
            srid = request["service_request_id"]
            assert request["service_code"] == "street_condition"
            assert request["description"] is None  # the citizen's own text is not published (issue #21)
            async with http.get(request["media_url"]) as r:
                assert r.status == 200 and r.content_type == "image/png" and await r.read() == photo

            # The citizen got the tracking number by SMS (through the sidecar and the gateway).
            await until(lambda: any(srid in s["body"] and "도로 파손 신고" in s["body"] for s in gateway.sent))
            assert {s["to"] for s in gateway.sent} == {"+821044445555"}

            # 2. The department closes it.
            async with http.post(f"{base}/api/open311/requests/{srid}/status", headers={"X-Api-Key": dept_key},
                                 json={"status": "closed", "status_notes": "구멍을 메웠습니다"}) as r:
                assert r.status == 200, await r.text()
            async with http.get(f"{base}/open311/v2/requests/{srid}.xml") as r:
                assert "<status>closed</status>" in await r.text()

            # 3. The citizen is told by SMS.
            await until(lambda: any("처리 완료" in s["body"] for s in gateway.sent))
            closed_sms = next(s for s in gateway.sent if "처리 완료" in s["body"])
            assert srid in closed_sms["body"] and "구멍을 메웠습니다" in closed_sms["body"]
            assert closed_sms["to"] == "+821044445555"
        finally:
            await messaging.stop()
            await consumer.stop()

    # 4. A caller keys the tracking number into the IVR (menu 6) and hears it is closed.
    ivr = await IvrHarness(ctx.db, ctx.bus).start()
    try:
        log = await ivr.dial(f"6 {srid}#", callerid="01044445555")
        assert log.heard[-4:] == ["dasan/lookup-number", f"digits:{srid}", "dasan/status-closed", "dasan/goodbye"]
        said = ivr.call_for(log).said
        assert said == [f"접수번호 {' '.join(srid)}번, 도로 파손 신고의 처리 상태는 처리 완료입니다. 구멍을 메웠습니다"]
        # In English (120 + 9, then 1): the same status, said in the caller's language.
        log = await ivr.dial(f"9 1 6 {srid}#")
        assert log.heard[-3:-1] == [f"digits:{srid}", "dasan/status-closed"]
        assert log.heard_language[-2] == "en"
        assert ivr.call_for(log).said[0].startswith(f"Tracking number {' '.join(srid)}, street condition report, "
                                                    "is closed, completed.")
    finally:
        await ivr.stop()
