"""Outbound gateways behind one small interface.

- ``OutboxProvider``: records the message only (status ``outbox``), for sites without a
  gateway; staff can read the outbox in the console.
- ``GenericHttpProvider``: POSTs JSON to ``sms.outbound_url``, signed like the inbound
  webhooks (``X-Dasan-Signature``); the gateway answers ``{"message_id": ...}``.
- ``TwilioProvider``: Twilio's Messages REST API (form-encoded, HTTP basic auth).

A provider raises ``ProviderError`` with ``retryable`` telling whether trying later may help
(network trouble, 5xx, 429) or not (the gateway refused the message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ivr.config import SmsSettings
from ivr.messaging.signatures import GENERIC_HEADER, generic_signature


@dataclass(frozen=True)
class Outgoing:
    to: str
    body: str
    channel: str = "sms"  # sms | mms | sns
    network: str | None = None  # for sns
    status_callback: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    status: str  # outbox | queued | sent


class ProviderError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Provider(Protocol):
    name: str

    async def send(self, message: Outgoing) -> SendResult: ...


class OutboxProvider:
    name = "outbox"

    async def send(self, message: Outgoing) -> SendResult:
        return SendResult(None, "outbox")


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class GenericHttpProvider:
    name = "generic"

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
                    raise ProviderError(f"gateway answered {resp.status}: {text[:200]}", _retryable(resp.status))
                try:
                    answer = json.loads(text) if text else {}
                except ValueError:
                    answer = {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"gateway unreachable: {exc!r}", retryable=True) from exc
        pmid = answer.get("message_id") if isinstance(answer, dict) else None
        status = answer.get("status") if isinstance(answer, dict) else None
        return SendResult(str(pmid) if pmid else None, str(status or "sent"))


class TwilioProvider:
    name = "twilio"

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
                    raise ProviderError(f"Twilio answered {resp.status}: {text[:200]}", _retryable(resp.status))
                answer = json.loads(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderError(f"Twilio unreachable or unreadable: {exc!r}", retryable=True) from exc
        return SendResult(str(answer.get("sid") or "") or None, str(answer.get("status") or "queued"))


def build_provider(sms: SmsSettings, http: aiohttp.ClientSession) -> Provider:
    if sms.provider == "twilio":
        return TwilioProvider(sms.twilio_api_base, sms.twilio_account_sid, sms.webhook_secret,
                              sms.sender_number, http)
    if sms.outbound_url:
        return GenericHttpProvider(sms.outbound_url, sms.webhook_secret, sms.sender_number, http)
    return OutboxProvider()
