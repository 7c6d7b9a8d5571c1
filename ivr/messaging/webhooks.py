"""What every provider's webhooks share: the app keys, the body check, the hand-off.

Each webhook (in its provider's module, ``ivr.messaging.providers.<name>``) is verified first
(a forged request gets 403 and stores nothing) and answers 200 only after the message is
committed. Request bodies are validated with pydantic models whose JSON schemas are also the
OpenAPI description.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ivr.messaging.store import HandOffError, Inbound, InboundWriter
from ivr.web.context import context_of
from ivr.web.errors import json_error

PHONE = r"^\+?[0-9][0-9 ().-]{2,39}$"
# {"session": aiohttp.ClientSession} while the app runs (made on start-up, closed on clean-up).
HTTP_KEY = web.AppKey("messaging_http", dict)
INBOUND_KEY = web.AppKey("messaging_inbound", InboundWriter)


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


def ctx(request: web.Request) -> Any:
    return context_of(request)


async def received(request: web.Request, inbound: Inbound) -> web.Response:
    """Store ``inbound`` (idempotent on provider + message id) and answer with the stored row."""
    try:
        result = await request.app[INBOUND_KEY].receive(inbound)
    except HandOffError:
        raise json_error(503, "stored, but the hand-off failed; retry the delivery") from None
    return web.json_response(result.as_json())
