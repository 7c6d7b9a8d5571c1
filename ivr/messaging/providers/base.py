"""What every SMS/MMS provider module offers, and what it is handed.

A provider module (one file in this package) defines ``PROVIDER = ProviderSpec(...)``: its
name (the value of ``sms.provider``), how to build its sender from the settings, the webhook
routes it receives messages and delivery statuses on, and the path of its status webhook
(given to the gateway as the status callback). Its own settings, if it has any beyond the
shared ``sms.*`` keys, come from ``sms.options.<name>`` through its ``settings`` model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from ivr.config import SmsSettings


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
    """A send failed; ``retryable`` tells whether trying later may help (network trouble, 5xx,
    429) or not (the gateway refused the message)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sender(Protocol):
    name: str

    async def send(self, message: Outgoing) -> SendResult: ...


# Kept under its old name: the outbound worker and its tests speak of "the provider".
Provider = Sender


def retryable_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    build: Callable[[SmsSettings, aiohttp.ClientSession], Sender]
    routes: Callable[[web.Application], None]
    status_path: str
    # The provider's own settings (``sms.options.<name>``); None when it has none.
    settings: type[BaseModel] | None = None

    def options(self, sms: SmsSettings) -> BaseModel | None:
        """The provider's own settings, checked; a clear error naming the key otherwise."""
        if self.settings is None:
            return None
        try:
            return self.settings.model_validate(sms.options.get(self.name, {}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"sms.options.{self.name}: {problems}") from None
