"""Adding an SMS provider is one module plus configuration (docs/extending.md).

The toy provider of tests/support/toy_provider.py is registered from here, chosen by
``sms.provider: toy`` with its own settings under ``sms.options.toy``, and driven end to end on
the real web app and the real outbound worker: a signed inbound webhook stores the message,
the acknowledgement goes out through the toy gateway (a local HTTP server) with the toy's
status callback, and the delivery status comes back through the toy's status webhook.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from ivr.context import AppContext
from ivr.db.models import Message
from ivr.messaging import providers
from ivr.messaging.outbound import MessagingService
from tests.support import toy_provider
from tests.support.messaging import messaging_context
from tests.support.web import serve, serve_app

SECRET = "toy-webhook-secret-0123456789"


@pytest.fixture
async def ctx(db_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    async with messaging_context(db_url, tmp_path / "var", SECRET) as context:
        yield context


@pytest.fixture
def toy() -> Iterator[None]:
    providers.register(toy_provider.PROVIDER)
    try:
        yield
    finally:
        providers.unregister(toy_provider.NAME)


class ToyGateway:
    """The toy's gateway: remembers each send and tells when one arrives."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], str]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.sent.append((await request.json(), request.headers.get("X-Toy-Key", "")))
        self.arrived.set()
        return web.json_response({"id": f"toy-{len(self.sent)}"})


async def _post(http: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
    raw = json.dumps(payload).encode()
    async with http.post(url, data=raw, headers={"Content-Type": "application/json",
                                                 toy_provider.HEADER: toy_provider.signature(SECRET, raw)}) as resp:
        await resp.read()
        return resp


def test_built_in_providers_are_found_by_name() -> None:
    assert {"generic", "twilio"} <= set(providers.names())
    with pytest.raises(ValueError, match=r"unknown provider 'nope' \(expected one of .*generic.*twilio"):
        providers.provider_named("nope")


def test_a_provider_of_a_taken_name_is_refused(toy: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        providers.register(providers.ProviderSpec(name="twilio", build=toy_provider.build,
                                                  routes=toy_provider.routes, status_path="/x"))


def test_the_providers_own_settings_are_checked(ctx: AppContext, toy: None) -> None:
    ctx.settings.sms.provider = toy_provider.NAME
    ctx.settings.sms.options = {"toy": {"url": "http://127.0.0.1:9/send", "api_key": "short"}}
    with pytest.raises(ValueError, match=r"sms\.options\.toy: api_key: String should have at least 8"):
        providers.provider_named("toy").options(ctx.settings.sms)


async def test_an_added_provider_receives_sends_and_reports_status(ctx: AppContext, toy: None) -> None:
    gateway = ToyGateway()
    gateway_app = web.Application()
    gateway_app.router.add_post("/send", gateway.handle)
    async with serve_app(gateway_app) as gateway_url:
        ctx.settings.sms.provider = toy_provider.NAME
        ctx.settings.sms.options = {"toy": {"url": f"{gateway_url}/send", "api_key": "toy-api-key-1"}}
        async with serve(ctx) as base, aiohttp.ClientSession() as http:
            forged = await http.post(f"{base}/webhooks/toy/in", json={"id": "t1", "from": "+821055556666"},
                                     headers={toy_provider.HEADER: "0" * 64})
            assert forged.status == 403
            bad = await _post(http, f"{base}/webhooks/toy/in", {"id": "", "from": "+821055556666"})
            assert bad.status == 400
            resp = await _post(http, f"{base}/webhooks/toy/in",
                               {"id": "t1", "from": "+821055556666", "text": "가로등이 꺼졌어요"})
            assert resp.status == 200
            async with ctx.db.session() as session:
                inbound = (await session.execute(select(Message))).scalar_one()
            assert (inbound.provider, inbound.provider_message_id, inbound.body) == ("toy", "t1", "가로등이 꺼졌어요")

            service = MessagingService(ctx)
            started = await service.start()
            try:
                assert started[0].endswith("-> toy")
                await asyncio.wait_for(gateway.arrived.wait(), 30)
            finally:
                await service.stop()
            (sent, key), = gateway.sent
            assert sent["to"] == "+821055556666" and key == "toy-api-key-1"
            assert sent["callback"] == ctx.settings.web.public_url.rstrip("/") + "/webhooks/toy/status"

            status = await _post(http, f"{base}/webhooks/toy/status", {"id": "toy-1", "state": "delivered"})
            assert status.status == 200
            async with ctx.db.session() as session:
                out = (await session.execute(select(Message).where(Message.direction == "out"))).scalar_one()
            assert (out.provider, out.provider_message_id, out.status) == ("toy", "toy-1", "delivered")
