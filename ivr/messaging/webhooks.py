"""Provider webhooks: inbound SMS/MMS (generic JSON and Twilio), delivery statuses, SNS.

Each is verified first (a forged request gets 403 and stores nothing) and answers 200 only
after the message is committed. Request bodies are validated with pydantic models whose JSON
schemas are also the OpenAPI description.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from ivr.db.models import Channel
from ivr.messaging import signatures
from ivr.messaging.store import HandOffError, Inbound, InboundWriter, update_status
from ivr.web.context import context_of
from ivr.web.errors import json_error

log = logging.getLogger("dasan.messaging")
PHONE = r"^\+?[0-9][0-9 ().-]{2,39}$"
# {"session": aiohttp.ClientSession} while the app runs (made on start-up, closed on clean-up).
HTTP_KEY = web.AppKey("messaging_http", dict)
INBOUND_KEY = web.AppKey("messaging_inbound", InboundWriter)


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class MediaIn(Strict):
    content_type: str = Field(max_length=100, description="what the sender claims; the file's bytes decide")
    data: str = Field(description="the file, base64")


class GenericSms(Strict):
    message_id: str = Field(min_length=1, max_length=200, description="the provider's id (idempotency key)")
    from_: str = Field(alias="from", pattern=PHONE, description="sender's phone number")
    to: str | None = Field(None, max_length=40)
    body: str = Field("", max_length=5000)
    media: list[MediaIn] = Field(default_factory=list, max_length=20)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")


class GenericStatus(Strict):
    message_id: str = Field(min_length=1, max_length=200)
    status: str = Field(min_length=1, max_length=20, pattern=r"^[A-Za-z_-]+$",
                        description="queued, sent, delivered, undelivered, failed, read")
    error: str | None = Field(None, max_length=500)


class SnsIn(Strict):
    message_id: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from", min_length=1, max_length=150, description="the account id on the network")
    name: str | None = Field(None, max_length=200)
    body: str = Field("", max_length=5000)
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")


def _ctx(request: web.Request) -> Any:
    return context_of(request)


def _parse(model: type[Strict], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        raise json_error(400, "the request body does not match the schema", details) from None


def _verify_generic(request: web.Request, raw: bytes) -> None:
    header = request.headers.get(signatures.GENERIC_HEADER)
    if not header:
        raise json_error(401, f"missing {signatures.GENERIC_HEADER} signature")
    if not signatures.verify_generic(_ctx(request).settings.sms.webhook_secret, raw, header):
        raise json_error(403, "signature does not match; request refused")


async def _received(request: web.Request, inbound: Inbound) -> web.Response:
    try:
        received = await request.app[INBOUND_KEY].receive(inbound)
    except HandOffError:
        raise json_error(503, "stored, but the hand-off failed; retry the delivery") from None
    return web.json_response(received.as_json())


async def generic_sms(request: web.Request) -> web.Response:
    raw = await request.read()
    _verify_generic(request, raw)
    sms = _parse(GenericSms, raw)
    photos: list[tuple[bytes, str | None]] = []
    for index, item in enumerate(sms.media, start=1):
        try:
            photos.append((base64.b64decode(item.data, validate=True), item.content_type))
        except (binascii.Error, ValueError):
            raise json_error(400, f"media {index}: data is not base64") from None
    return await _received(request, Inbound(
        provider="generic", provider_message_id=sms.message_id, channel=Channel.sms, sender=sms.from_,
        identity_kind="phone", body=sms.body, photos=photos, language=sms.language,
        data={"to": sms.to} if sms.to else {}))


async def generic_status(request: web.Request) -> web.Response:
    raw = await request.read()
    _verify_generic(request, raw)
    status = _parse(GenericStatus, raw)
    message = await update_status(_ctx(request), "generic", status.message_id, status.status, status.error)
    if message is None:
        raise json_error(404, "no message with that message_id")
    return web.json_response({"message_id": message.id, "status": message.status})


async def sns_message(request: web.Request) -> web.Response:
    network = request.match_info["network"]
    raw = await request.read()
    _verify_generic(request, raw)
    sns = _parse(SnsIn, raw)
    return await _received(request, Inbound(
        provider=f"sns:{network}", provider_message_id=sns.message_id, channel=Channel.sns,
        sender=sns.from_, identity_kind=f"sns:{network}", body=sns.body, display_name=sns.name,
        language=sns.language))


# -- Twilio ---------------------------------------------------------------------------------

def _twilio_urls(request: web.Request) -> list[str]:
    public = _ctx(request).settings.web.public_url.rstrip("/") + request.path_qs
    return list(dict.fromkeys([public, str(request.url)]))


async def _twilio_form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise json_error(415, "Twilio webhooks are application/x-www-form-urlencoded")
    form = await request.post()
    params = [(k, v) for k, v in form.items() if isinstance(v, str)]
    header = request.headers.get(signatures.TWILIO_HEADER)
    if not header:
        raise json_error(401, f"missing {signatures.TWILIO_HEADER} signature")
    if not signatures.verify_twilio(_ctx(request).settings.sms.webhook_secret, _twilio_urls(request),
                                    params, header):
        raise json_error(403, "signature does not match; request refused")
    return dict(params)


def _twiml() -> web.Response:
    return web.Response(text='<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
                        content_type="text/xml")


MAX_MEDIA_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


def _media_origins(sms: Any) -> set[tuple[str, str, int]]:
    """Where a media download may go: the Twilio API's origin and ``sms.media_redirect_hosts``
    (a bare host means https on 443; or a whole origin such as ``https://cdn.example:8443``)."""
    from ivr.web.origin import origin_of

    origins = {origin_of(sms.twilio_api_base)}
    for entry in sms.media_redirect_hosts:
        origins.add(origin_of(entry if "://" in entry else f"https://{entry}"))
    return {o for o in origins if o is not None}


async def _fetch_media(request: web.Request, url: str, max_bytes: int) -> tuple[bytes, str | None]:
    """Download one MediaUrl, never more than ``max_bytes`` + 1. Every hop, the first URL and each
    redirect, must be on an allowed origin (``_media_origins``): a request cannot make us fetch an
    address of its choosing, directly or through a redirect. The API credentials go to the API's
    own origin only."""
    from ivr.web.origin import origin_of

    sms = _ctx(request).settings.sms
    allowed, api = _media_origins(sms), origin_of(sms.twilio_api_base)
    target = URL(url)
    for _hop in range(MAX_MEDIA_REDIRECTS + 1):
        here = origin_of(str(target))
        if here is None or here not in allowed:
            raise ValueError("media URL is not on the provider's host" if _hop == 0
                             else f"media redirect to {target.host} is not on an allowed host")
        headers = ({"Authorization": aiohttp.encode_basic_auth(sms.twilio_account_sid, sms.webhook_secret)}
                   if sms.twilio_account_sid and here == api else {})
        async with request.app[HTTP_KEY]["session"].get(target, headers=headers, allow_redirects=False,
                                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            if resp.status in REDIRECTS:
                location = resp.headers.get("Location")
                if not location:
                    raise ValueError(f"media URL answered {resp.status} without a Location")
                target = target.join(URL(location))
                continue
            if resp.status != 200:
                raise ValueError(f"media URL answered {resp.status}")
            data = await resp.content.read(max_bytes + 1)
            return data, resp.headers.get("Content-Type")
    raise ValueError(f"media URL redirected more than {MAX_MEDIA_REDIRECTS} times")


async def twilio_sms(request: web.Request) -> web.Response:
    form = await _twilio_form(request)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    sender = form.get("From", "")
    if not sid or len(sid) > 200:
        raise json_error(400, "MessageSid is required")
    if not sender or len(sender) > 40 or not any(ch.isdigit() for ch in sender):
        raise json_error(400, "From must be a phone number")
    try:
        count = min(int(form.get("NumMedia") or 0), 20)
    except ValueError:
        raise json_error(400, "NumMedia must be a number") from None
    max_bytes = _ctx(request).settings.sms.max_media_bytes
    photos: list[tuple[bytes, str | None]] = []
    failed: list[str] = []
    for index in range(count):
        url = form.get(f"MediaUrl{index}")
        if not url:
            continue
        try:
            photos.append(await _fetch_media(request, url, max_bytes))
        except (ValueError, aiohttp.ClientError, TimeoutError) as exc:
            # The text is kept whatever happens to a photo; the failure is on the record.
            failed.append(f"photo {index + 1}: {exc}")
    await _received(request, Inbound(
        provider="twilio", provider_message_id=sid, channel=Channel.sms, sender=sender, identity_kind="phone",
        body=form.get("Body", "")[:5000], photos=photos,
        data={"to": form.get("To", ""), "media_errors": failed} if failed else {"to": form.get("To", "")}))
    return _twiml()


async def twilio_status(request: web.Request) -> web.Response:
    form = await _twilio_form(request)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not sid or not status:
        raise json_error(400, "MessageSid and MessageStatus are required")
    error = form.get("ErrorCode")
    message = await update_status(_ctx(request), "twilio", sid[:200], status[:20], f"Twilio error {error}" if error else None)
    if message is None:
        raise json_error(404, "no message with that MessageSid")
    return _twiml()


def routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/sms", generic_sms)
    app.router.add_post("/webhooks/sms/status", generic_status)
    app.router.add_post("/webhooks/twilio/sms", twilio_sms)
    app.router.add_post("/webhooks/twilio/status", twilio_status)
    app.router.add_post(r"/webhooks/sns/{network:[a-z0-9_-]{1,16}}", sns_message)
