"""Test helpers: the app on an ephemeral port with a signed-in agent, signed webhook posts,
and a local gateway (a real aiohttp server on 127.0.0.1) standing in for the SMS provider."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.messaging.providers.generic import GENERIC_HEADER, generic_signature
from ivr.messaging.providers.twilio import TWILIO_HEADER, twilio_signature
from tests.support.web import serve_app


def sidecar_settings(db_url: str, data_dir: Path) -> Settings:
    """Settings for sidecar tests: the given database and data folder, no AMI."""
    settings = Settings()
    settings.data_dir = data_dir
    settings.database.url = db_url
    settings.ami.enabled = False
    return settings


@asynccontextmanager
async def messaging_context(db_url: str, data_dir: Path, webhook_secret: str) -> AsyncIterator[AppContext]:
    """An AppContext for sidecar tests: the given database, in-process bus, no AMI."""
    settings = sidecar_settings(db_url, data_dir)
    settings.sms.webhook_secret = webhook_secret
    context = AppContext(settings, Database(db_url), MemoryBus())
    try:
        yield context
    finally:
        await context.close()


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A real, valid PNG (red pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


async def post_signed(http: aiohttp.ClientSession, url: str, payload: dict[str, Any], secret: str,
                      signature: str | None = None) -> aiohttp.ClientResponse:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json",
               GENERIC_HEADER: signature if signature is not None else generic_signature(secret, raw)}
    resp = await http.post(url, data=raw, headers=headers)
    await resp.read()
    return resp


async def post_twilio(http: aiohttp.ClientSession, url: str, form: dict[str, str], token: str,
                      signature: str | None = None) -> aiohttp.ClientResponse:
    sig = signature if signature is not None else twilio_signature(token, url, form.items())
    resp = await http.post(url, data=form, headers={TWILIO_HEADER: sig})
    await resp.read()
    return resp


@dataclass
class LocalGateway:
    """Records what the generic provider and Twilio's REST API receive; serves media files."""

    url: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    fail_next: int = 0

    async def _send(self, request: web.Request) -> web.Response:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": "try later"}, status=503)
        body = await request.read()
        self.raw.append(body)
        self.headers.append(dict(request.headers))
        if request.content_type == "application/json":
            self.sent.append(json.loads(body))
            return web.json_response({"message_id": f"gw-{len(self.sent)}", "status": "sent"})
        form = await request.post()
        self.sent.append({k: str(v) for k, v in form.items()})
        return web.json_response({"sid": f"SM{len(self.sent):032d}", "status": "queued"}, status=201)

    async def _media(self, request: web.Request) -> web.Response:
        item = self.media.get(request.path)
        if item is None:
            return web.Response(status=404)
        return web.Response(body=item[0], content_type=item[1])

    @asynccontextmanager
    async def run(self) -> AsyncIterator[LocalGateway]:
        app = web.Application()
        app.router.add_post("/send", self._send)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._send)
        app.router.add_get("/{tail:.*}", self._media)
        async with serve_app(app) as url:
            self.url = url
            yield self


async def sign_in(http: aiohttp.ClientSession, base: str, ctx: AppContext, username: str = "agent1",
                  role: str = "agent") -> str:
    """Create the user, sign in (the cookie lands in ``http``'s jar) and return the CSRF token."""
    from ivr.web.auth import create_user

    await create_user(ctx, username, "pw-" + username, role)
    async with http.post(f"{base}/api/login", json={"username": username, "password": "pw-" + username}) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["csrf_token"])
