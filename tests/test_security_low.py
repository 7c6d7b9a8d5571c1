"""The low findings of issue #21 on the real app over real sockets (SQLite and PostgreSQL): an
MMS photo is fetched only through allowed hosts at every redirect hop; Open311 texts a number at
most a few times an hour per number and per API key; the public listing does not publish a
citizen's own SMS words; stored photos are served as the image type their bytes proved,
never sniffed and sandboxed."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Media, Message
from ivr.open311.api import TEXTS_PER_KEY_HOUR, TEXTS_PER_NUMBER_HOUR
from ivr.open311.keys import create_key
from ivr.open311.models import ServiceRequest
from tests.support.messaging import messaging_context, png_bytes, post_signed, post_twilio, sign_in
from tests.support.web import serve, serve_app

SECRET = "test-webhook-secret"


@pytest.fixture
async def ctx(db_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    async with messaging_context(db_url, tmp_path / "var", SECRET) as context:
        yield context


@asynccontextmanager
async def http_server(handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    async with serve_app(app) as url:
        yield url


async def test_mms_media_redirects_are_checked_at_every_hop(ctx: AppContext) -> None:
    photo = png_bytes()
    inside: list[dict[str, str]] = []  # requests that reached the "internal" server

    async def internal(request: web.Request) -> web.Response:
        inside.append(dict(request.headers))
        return web.Response(body=photo, content_type="image/png")

    async with http_server(internal) as internal_url:
        async def api(request: web.Request) -> web.Response:
            raise web.HTTPFound(internal_url + "/latest/meta-data.png")

        async with http_server(api) as api_url, serve(ctx) as base, aiohttp.ClientSession() as http:
            sms = ctx.settings.sms
            sms.provider, sms.twilio_api_base, sms.twilio_account_sid = "twilio", api_url, "AC" + "1" * 32

            async def send(sid: str) -> Message:
                form = {"MessageSid": sid, "From": "+821033334444", "To": "120", "Body": "사진", "NumMedia": "1",
                        "MediaUrl0": api_url + "/Media/ME1", "MediaContentType0": "image/png"}
                resp = await post_twilio(http, f"{base}/webhooks/twilio/sms", form, SECRET)
                assert resp.status == 200
                async with ctx.db.session() as session:
                    return (await session.execute(select(Message).where(Message.provider_message_id == sid))
                            ).scalar_one()

            refused = await send("MM" + "a" * 32)
            assert "redirect to 127.0.0.1 is not on an allowed host" in refused.data["media_errors"][0]
            assert inside == []  # the redirect was not followed
            # A host the site allows (Twilio's media CDN in production) is followed, without the
            # API credentials.
            sms.media_redirect_hosts = [internal_url]
            await send("MM" + "b" * 32)
            assert len(inside) == 1 and "Authorization" not in inside[0]
            async with ctx.db.session() as session:
                media = (await session.execute(select(Media))).scalar_one()
            assert (ctx.settings.data_dir / media.path).read_bytes() == photo


async def test_photos_are_served_as_proved_never_sniffed_and_sandboxed(ctx: AppContext) -> None:
    polyglot = png_bytes() + b"<html><script>alert(document.cookie)</script></html>"
    async with serve(ctx) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await post_signed(http, f"{base}/webhooks/sms", {
            "message_id": "poly-1", "from": "+821055556666", "body": "사진",
            "media": [{"content_type": "image/png", "data": base64.b64encode(polyglot).decode()}]}, SECRET)
        assert resp.status == 200
        async with ctx.db.session() as session:
            media = (await session.execute(select(Media))).scalar_one()
        await sign_in(http, base, ctx)
        async with http.get(f"{base}/api/messaging/media/{media.id}") as r:
            assert r.status == 200 and await r.read() == polyglot
            assert r.headers["Content-Type"] == "image/png"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in r.headers["Content-Security-Policy"]
            assert r.headers["Server"] == "dasan"


@pytest.fixture
async def open311(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[AppContext, str, aiohttp.ClientSession]]:
    settings = Settings()
    settings.data_dir = tmp_path / "var"
    settings.database.url = db_url
    ctx = AppContext(settings, Database(db_url), MemoryBus())
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        settings.web.public_url = base
        yield ctx, base, http
    await ctx.db.dispose()


async def _post_request(http: Any, base: str, api_key: str, phone: str | None) -> tuple[int, Any]:
    """A street-condition request through Open311 with ``api_key``, with a phone to text or none."""
    data = {"api_key": api_key, "service_code": "street_condition", "lat": "37.5665", "long": "126.9780",
            "description": "도로 파손"}
    if phone:
        data["phone"] = phone
    async with http.post(f"{base}/open311/v2/requests.json", data=data) as r:
        return r.status, await r.json()


async def test_open311_texts_a_number_a_few_times_an_hour(open311: tuple[AppContext, str, Any]) -> None:
    ctx, base, http = open311
    key, other_key = await create_key(ctx.db, "client-a", "submit"), await create_key(ctx.db, "client-b", "submit")

    async def post(api_key: str, phone: str | None) -> tuple[int, Any]:
        return await _post_request(http, base, api_key, phone)

    for _ in range(TEXTS_PER_NUMBER_HOUR):
        assert (await post(key, "010-1234-0000"))[0] == 200
    # The same number, written another way and through another key: refused, nothing filed.
    status, doc = await post(other_key, "+82 10 1234 0000")
    assert status == 429 and "phone number" in doc[0]["description"]
    assert (await post(key, None))[0] == 200  # without a phone nobody is texted: fine
    async with ctx.db.session() as session:
        rows = list((await session.execute(select(ServiceRequest))).scalars())
    assert len(rows) == TEXTS_PER_NUMBER_HOUR + 1
    received = await ctx.bus.consume("sms.outbound", "t", "t", count=50, block=1)
    assert [j.data["to"] for j in received] == ["+821012340000"] * TEXTS_PER_NUMBER_HOUR


async def test_one_api_key_texts_at_most_so_many_numbers_an_hour(open311: tuple[AppContext, str, Any]) -> None:
    """SMS pumping through many numbers: each number is below its own limit, the key is not."""
    ctx, base, http = open311
    key, other_key = await create_key(ctx.db, "client-a", "submit"), await create_key(ctx.db, "client-b", "submit")

    async def post(api_key: str, phone: str | None) -> tuple[int, Any]:
        return await _post_request(http, base, api_key, phone)

    assert (await post(key, None))[0] == 200  # a request without a phone texts nobody: not counted
    for i in range(TEXTS_PER_KEY_HOUR):
        status, doc = await post(key, f"010-5555-{i:04d}")
        assert status == 200, (i, doc)
    status, doc = await post(key, "010-5555-9999")  # a fresh number, but this key had its texts
    assert status == 429 and "api_key" in doc[0]["description"], doc
    assert (await post(key, None))[0] == 200  # still files requests that text nobody
    assert (await post(other_key, "010-5555-9999"))[0] == 200  # another key is not held back
    async with ctx.db.session() as session:
        rows = list((await session.execute(select(ServiceRequest))).scalars())
    assert len(rows) == TEXTS_PER_KEY_HOUR + 3
    assert "+821055559999" in [r.phone for r in rows] and len([r for r in rows if r.phone]) == TEXTS_PER_KEY_HOUR + 1
    received = await ctx.bus.consume("sms.outbound", "t", "t", count=200, block=1)
    assert len(received) == TEXTS_PER_KEY_HOUR + 1


async def test_public_listing_withholds_a_citizens_own_words(open311: tuple[AppContext, str, Any]) -> None:
    ctx, base, http = open311
    async with ctx.db.transaction() as session:
        session.add_all([
            ServiceRequest(service_request_id="20261207-0001", service_code="street_condition",
                           service_name="Road", status="open", source="sms", token="tok-sms",
                           description="제 번호는 010-9999-8888이고 집 앞이 파손됐어요"),
            ServiceRequest(service_request_id="20261207-0002", service_code="street_condition",
                           service_name="Road", status="open", source="api", token="tok-api",
                           description="세종대로 110 포트홀")])
    async with http.get(f"{base}/open311/v2/requests.json") as r:
        listed = {d["service_request_id"]: d["description"] for d in await r.json()}
    assert listed == {"20261207-0001": None, "20261207-0002": "세종대로 110 포트홀"}
    async with http.get(f"{base}/open311/v2/requests/20261207-0001.xml") as r:
        assert "010-9999-8888" not in await r.text()
