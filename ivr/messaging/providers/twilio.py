"""Twilio: the Messages REST API out, its form-encoded webhooks in.

Settings: ``sms.provider: twilio``, ``sms.webhook_secret`` (the auth token: it signs the
webhooks and authenticates the API calls), ``sms.twilio_account_sid``,
``sms.twilio_api_base`` and ``sms.media_redirect_hosts`` (where an MMS photo download may be
redirected). Webhooks: ``POST /webhooks/twilio/sms`` and ``/webhooks/twilio/status``, signed
``X-Twilio-Signature``: base64 HMAC-SHA1 with the auth token over the full URL the request
was sent to followed by every POST parameter, sorted by name (then value), as name+value
(https://www.twilio.com/docs/usage/security#validating-requests; known answers in
tests/test_messaging_signatures.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable

import aiohttp
from aiohttp import web
from yarl import URL

from ivr.config import SmsSettings
from ivr.db.models import Channel
from ivr.messaging.ids import longest_message_id
from ivr.messaging.providers.base import (
    Outgoing,
    ProviderError,
    ProviderSpec,
    Sender,
    SendResult,
    retryable_status,
)
from ivr.messaging.store import Inbound, update_status
from ivr.messaging.webhooks import HTTP_KEY, ctx, received
from ivr.web.errors import json_error
from ivr.web.limits import read_capped
from ivr.web.origin import origin_of

NAME = "twilio"
SID_LENGTH = longest_message_id(NAME)  # the longest MessageSid whose timeline keys fit the database
TWILIO_HEADER = "X-Twilio-Signature"
STATUS_PATH = "/webhooks/twilio/status"
MAX_MEDIA_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    # Sorted by name, and a repeated name's values sorted too (as Twilio's helper libraries do):
    # the order a form arrives in must not matter.
    payload = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(auth_token: str, urls: Iterable[str], params: list[tuple[str, str]],
                  header: str | None) -> bool:
    """True when the signature matches one of ``urls`` (public URL and the URL as received:
    behind a proxy the address Twilio posted to is the public one)."""
    if not header or not auth_token:
        return False
    return any(hmac.compare_digest(twilio_signature(auth_token, url, params), header.strip())
               for url in urls)


# -- sending ----------------------------------------------------------------------------------

class TwilioProvider:
    name = NAME

    def __init__(self, api_base: str, account_sid: str, auth_token: str, sender: str,
                 http: aiohttp.ClientSession) -> None:
        self.api_base = api_base.rstrip("/")
        self.account_sid, self.auth_token, self.sender, self.http = account_sid, auth_token, sender, http

    async def send(self, message: Outgoing) -> SendResult:
        url = f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        form = {"To": message.to, "From": self.sender, "Body": message.body}
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        try:
            auth = {"Authorization": aiohttp.encode_basic_auth(self.account_sid, self.auth_token)}
            async with self.http.post(url, data=form, headers=auth, timeout=aiohttp.ClientTimeout(total=20)) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise ProviderError(f"Twilio answered {resp.status}: {text[:200]}",
                                        retryable_status(resp.status))
                answer = json.loads(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderError(f"Twilio unreachable or unreadable: {exc!r}", retryable=True) from exc
        return SendResult(str(answer.get("sid") or "") or None, str(answer.get("status") or "queued"))


def build(sms: SmsSettings, http: aiohttp.ClientSession) -> Sender:
    return TwilioProvider(sms.twilio_api_base, sms.twilio_account_sid, sms.webhook_secret,
                          sms.sender_number, http)


# -- receiving --------------------------------------------------------------------------------

def _urls(request: web.Request) -> list[str]:
    public = ctx(request).settings.web.public_url.rstrip("/") + request.path_qs
    return list(dict.fromkeys([public, str(request.url)]))


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise json_error(415, "Twilio webhooks are application/x-www-form-urlencoded")
    form = await request.post()
    params = [(k, v) for k, v in form.items() if isinstance(v, str)]
    header = request.headers.get(TWILIO_HEADER)
    if not header:
        raise json_error(401, f"missing {TWILIO_HEADER} signature")
    if not verify_twilio(ctx(request).settings.sms.webhook_secret, _urls(request), params, header):
        raise json_error(403, "signature does not match; request refused")
    return dict(params)


def _twiml() -> web.Response:
    return web.Response(text='<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
                        content_type="text/xml")


def _media_origins(sms: SmsSettings) -> set[tuple[str, str, int]]:
    """Where a media download may go: the Twilio API's origin and ``sms.media_redirect_hosts``
    (a bare host means https on 443; or a whole origin such as ``https://cdn.example:8443``)."""
    origins = {origin_of(sms.twilio_api_base)}
    for entry in sms.media_redirect_hosts:
        origins.add(origin_of(entry if "://" in entry else f"https://{entry}"))
    return {o for o in origins if o is not None}


async def _fetch_media(request: web.Request, url: str, max_bytes: int) -> tuple[bytes, str | None]:
    """Download one MediaUrl, never more than ``max_bytes`` + 1. Every hop, the first URL and each
    redirect, must be on an allowed origin (``_media_origins``): a request cannot make us fetch an
    address of its choosing, directly or through a redirect. The API credentials go to the API's
    own origin only."""
    sms = ctx(request).settings.sms
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
            data = await read_capped(resp.content, max_bytes)
            return data, resp.headers.get("Content-Type")
    raise ValueError(f"media URL redirected more than {MAX_MEDIA_REDIRECTS} times")


async def twilio_sms(request: web.Request) -> web.Response:
    form = await _form(request)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    sender = form.get("From", "")
    if not sid:
        raise json_error(400, "MessageSid is required")
    if len(sid) > SID_LENGTH:  # its timeline keys would not fit the database
        raise json_error(400, f"MessageSid is longer than {SID_LENGTH} characters")
    if not sender or len(sender) > 40 or not any(ch.isdigit() for ch in sender):
        raise json_error(400, "From must be a phone number")
    try:
        count = min(int(form.get("NumMedia") or 0), 20)
    except ValueError:
        raise json_error(400, "NumMedia must be a number") from None
    max_bytes = ctx(request).settings.sms.max_media_bytes
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
    await received(request, Inbound(
        provider=NAME, provider_message_id=sid, channel=Channel.sms, sender=sender, identity_kind="phone",
        body=form.get("Body", "")[:5000], photos=photos,
        data={"to": form.get("To", ""), "media_errors": failed} if failed else {"to": form.get("To", "")}))
    return _twiml()


async def twilio_status(request: web.Request) -> web.Response:
    form = await _form(request)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not sid or not status:
        raise json_error(400, "MessageSid and MessageStatus are required")
    error = form.get("ErrorCode")
    message = await update_status(ctx(request), NAME, sid, status,
                                  f"Twilio error {error}" if error else None)
    if message is None:
        raise json_error(404, "no message with that MessageSid")
    return _twiml()


def routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/sms", twilio_sms)
    app.router.add_post(STATUS_PATH, twilio_status)


PROVIDER = ProviderSpec(name=NAME, build=build, routes=routes, status_path=STATUS_PATH)
