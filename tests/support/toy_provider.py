"""A tiny SMS provider as a site would add one (docs/extending.md), for tests/test_messaging_providers.py.

Out: JSON ``{"to", "text", "callback"}`` POSTed to ``sms.options.toy.url`` with its API key in
``X-Toy-Key``; the gateway answers ``{"id": ...}``. In: ``POST /webhooks/toy/in``
(``{"id", "from", "text"}``) and ``/webhooks/toy/status`` (``{"id", "state"}``), signed
``X-Toy-Signature: <hex HMAC-SHA256(sms.webhook_secret, body)>``.
"""

from __future__ import annotations

import hashlib
import hmac

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field

from ivr.config import SmsSettings
from ivr.db.models import Channel
from ivr.messaging.providers.base import (
    Outgoing,
    ProviderError,
    ProviderSpec,
    Sender,
    SendResult,
    retryable_status,
)
from ivr.messaging.store import Inbound, update_status
from ivr.messaging.webhooks import PHONE, Strict, ctx, received
from ivr.web.bodies import parse_model
from ivr.web.errors import json_error

NAME = "toy"
HEADER = "X-Toy-Signature"
STATUS_PATH = "/webhooks/toy/status"


class ToySettings(BaseModel):
    url: str = Field(min_length=1)
    api_key: str = Field(min_length=8)


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class ToySender:
    name = NAME

    def __init__(self, options: ToySettings, http: aiohttp.ClientSession) -> None:
        self.options, self.http = options, http

    async def send(self, message: Outgoing) -> SendResult:
        payload = {"to": message.to, "text": message.body, "callback": message.status_callback}
        try:
            async with self.http.post(self.options.url, json=payload,
                                      headers={"X-Toy-Key": self.options.api_key}) as resp:
                if resp.status >= 300:
                    raise ProviderError(f"toy gateway answered {resp.status}", retryable_status(resp.status))
                answer = await resp.json()
        except aiohttp.ClientError as exc:
            raise ProviderError(f"toy gateway unreachable: {exc!r}", retryable=True) from exc
        return SendResult(str(answer["id"]), "sent")


def build(sms: SmsSettings, http: aiohttp.ClientSession) -> Sender:
    options = PROVIDER.options(sms)
    assert isinstance(options, ToySettings)
    return ToySender(options, http)


class ToyIn(Strict):
    id: str = Field(min_length=1, max_length=100)
    from_: str = Field(alias="from", pattern=PHONE)
    text: str = Field("", max_length=2000)


class ToyStatus(Strict):
    id: str = Field(min_length=1, max_length=100)
    state: str = Field(pattern=r"^[a-z]{1,20}$")


async def _verified(request: web.Request) -> bytes:
    raw = await request.read()
    given = request.headers.get(HEADER, "")
    if not hmac.compare_digest(given, signature(ctx(request).settings.sms.webhook_secret, raw)):
        raise json_error(403, "signature does not match; request refused")
    return raw


async def toy_in(request: web.Request) -> web.Response:
    message = parse_model(ToyIn, await _verified(request))
    return await received(request, Inbound(
        provider=NAME, provider_message_id=message.id, channel=Channel.sms, sender=message.from_,
        identity_kind="phone", body=message.text))


async def toy_status(request: web.Request) -> web.Response:
    status = parse_model(ToyStatus, await _verified(request))
    row = await update_status(ctx(request), NAME, status.id, status.state, None)
    if row is None:
        raise json_error(404, "no message with that id")
    return web.json_response({"status": row.status})


def routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/toy/in", toy_in)
    app.router.add_post(STATUS_PATH, toy_status)


PROVIDER = ProviderSpec(name=NAME, build=build, routes=routes, status_path=STATUS_PATH, settings=ToySettings)
