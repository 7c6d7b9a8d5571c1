"""The generic gateway: signed JSON both ways, and the outbox when there is no gateway.

Inbound: ``POST /webhooks/sms`` (SMS/MMS, photos inline as base64), ``/webhooks/sms/status``
(delivery statuses) and ``/webhooks/sns/<network>`` (messages from a social network's
relay), each signed ``X-Dasan-Signature: sha256=<hex HMAC-SHA256(sms.webhook_secret, raw
body)>`` (the form GitHub and many gateways use; known answer in
tests/test_messaging_signatures.py). Outbound: JSON POSTed, signed the same way, to
``sms.outbound_url``; the gateway answers ``{"message_id": ...}``. Without an outbound URL
messages are only recorded (status ``outbox``) for staff to read in the console.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import Field

from ivr.config import SmsSettings
from ivr.db.models import Channel
from ivr.messaging.ids import LONGEST_NETWORK, longest_message_id
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

NAME = "generic"
GENERIC_HEADER = "X-Dasan-Signature"
STATUS_PATH = "/webhooks/sms/status"


def generic_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_generic(secret: str, body: bytes, header: str | None) -> bool:
    # An empty secret is one everybody knows: nothing signed with it is believed.
    return bool(secret) and bool(header) and hmac.compare_digest(generic_signature(secret, body), str(header).strip())


# -- sending ----------------------------------------------------------------------------------

class OutboxProvider:
    name = "outbox"

    async def send(self, message: Outgoing) -> SendResult:
        return SendResult(None, "outbox")


class GenericHttpProvider:
    name = NAME

    def __init__(self, url: str, secret: str, sender: str, http: aiohttp.ClientSession) -> None:
        self.url, self.secret, self.sender, self.http = url, secret, sender, http

    async def send(self, message: Outgoing) -> SendResult:
        payload: dict[str, Any] = {"to": message.to, "from": self.sender, "body": message.body,
                                   "channel": message.channel}
        if message.network:
            payload["network"] = message.network
        if message.status_callback:
            payload["status_callback"] = message.status_callback
        raw = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", GENERIC_HEADER: generic_signature(self.secret, raw)}
        try:
            async with self.http.post(self.url, data=raw, headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=20)) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise ProviderError(f"gateway answered {resp.status}: {text[:200]}",
                                        retryable_status(resp.status))
                try:
                    answer = json.loads(text) if text else {}
                except ValueError:
                    answer = {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"gateway unreachable: {exc!r}", retryable=True) from exc
        pmid = answer.get("message_id") if isinstance(answer, dict) else None
        status = answer.get("status") if isinstance(answer, dict) else None
        return SendResult(str(pmid) if pmid else None, str(status or "sent"))


def build(sms: SmsSettings, http: aiohttp.ClientSession) -> Sender:
    if sms.outbound_url:
        return GenericHttpProvider(sms.outbound_url, sms.webhook_secret, sms.sender_number, http)
    return OutboxProvider()


# -- receiving --------------------------------------------------------------------------------

# The longest ids whose timeline keys fit the database (an SNS provider is "sns:<network>").
GENERIC_ID_LENGTH = longest_message_id(NAME)
SNS_ID_LENGTH = longest_message_id("sns:" + "n" * LONGEST_NETWORK)


class MediaIn(Strict):
    content_type: str = Field(max_length=100, description="what the sender claims; the file's bytes decide")
    data: str = Field(description="the file, base64")


class GenericSms(Strict):
    message_id: str = Field(min_length=1, max_length=GENERIC_ID_LENGTH, description="the provider's id (idempotency key)")
    from_: str = Field(alias="from", pattern=PHONE, description="sender's phone number")
    to: str | None = Field(None, max_length=40)
    body: str = Field("", max_length=5000)
    media: list[MediaIn] = Field(default_factory=list, max_length=20)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")


class GenericStatus(Strict):
    message_id: str = Field(min_length=1, max_length=GENERIC_ID_LENGTH)
    status: str = Field(min_length=1, max_length=20, pattern=r"^[A-Za-z_-]+$",
                        description="queued, sent, delivered, undelivered, failed, read")
    error: str | None = Field(None, max_length=500)


class SnsIn(Strict):
    message_id: str = Field(min_length=1, max_length=SNS_ID_LENGTH)
    from_: str = Field(alias="from", min_length=1, max_length=150, description="the account id on the network")
    name: str | None = Field(None, max_length=200)
    body: str = Field("", max_length=5000)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")


def _verify(request: web.Request, raw: bytes) -> None:
    header = request.headers.get(GENERIC_HEADER)
    if not header:
        raise json_error(401, f"missing {GENERIC_HEADER} signature")
    if not verify_generic(ctx(request).settings.sms.webhook_secret, raw, header):
        raise json_error(403, "signature does not match; request refused")


async def generic_sms(request: web.Request) -> web.Response:
    raw = await request.read()
    _verify(request, raw)
    sms = parse_model(GenericSms, raw)
    photos: list[tuple[bytes, str | None]] = []
    for index, item in enumerate(sms.media, start=1):
        try:
            photos.append((base64.b64decode(item.data, validate=True), item.content_type))
        except (binascii.Error, ValueError):
            raise json_error(400, f"media {index}: data is not base64") from None
    return await received(request, Inbound(
        provider=NAME, provider_message_id=sms.message_id, channel=Channel.sms, sender=sms.from_,
        identity_kind="phone", body=sms.body, photos=photos, language=sms.language,
        data={"to": sms.to} if sms.to else {}))


async def generic_status(request: web.Request) -> web.Response:
    raw = await request.read()
    _verify(request, raw)
    status = parse_model(GenericStatus, raw)
    message = await update_status(ctx(request), NAME, status.message_id, status.status, status.error)
    if message is None:
        raise json_error(404, "no message with that message_id")
    return web.json_response({"message_id": message.id, "status": message.status})


async def sns_message(request: web.Request) -> web.Response:
    network = request.match_info["network"]
    raw = await request.read()
    _verify(request, raw)
    sns = parse_model(SnsIn, raw)
    return await received(request, Inbound(
        provider=f"sns:{network}", provider_message_id=sns.message_id, channel=Channel.sns,
        sender=sns.from_, identity_kind=f"sns:{network}", body=sns.body, display_name=sns.name,
        language=sns.language))


def routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/sms", generic_sms)
    app.router.add_post(STATUS_PATH, generic_status)
    app.router.add_post("/webhooks/sns/{network:[a-z0-9_-]{1," + str(LONGEST_NETWORK) + "}}", sns_message)


PROVIDER = ProviderSpec(name=NAME, build=build, routes=routes, status_path=STATUS_PATH)
