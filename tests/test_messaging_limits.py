"""The rate limiter's token bucket (with a controlled clock) and the webhook exemption over
real HTTP."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.web.limits import RateLimiter
from tests.support.messaging import post_signed
from tests.support.web import serve


def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [1000.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    key = ("127.0.0.1", "GET /x")
    assert [limiter.take(key) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take(key) == 20.0  # 3 per minute: one token every 20 s
    assert limiter.take(("127.0.0.2", "GET /x")) == 0.0  # another client has its own bucket
    now[0] += 20.0
    assert limiter.take(key) == 0.0
    assert limiter.take(key) > 0


async def test_provider_webhooks_are_not_rate_limited(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings()
    settings.data_dir = tmp_path / "var"
    settings.database.url = sqlite_url
    settings.web.rate_limit_per_minute = 2
    # An explicit strong secret, as a site sets it: an empty one is refused (ivr.site_secrets).
    settings.sms.webhook_secret = "test-webhook-" + uuid.uuid4().hex
    ctx = AppContext(settings, Database(sqlite_url), MemoryBus())
    try:
        async with serve(ctx) as base, aiohttp.ClientSession() as http:
            statuses = [(await post_signed(http, f"{base}/webhooks/sms", {
                "message_id": f"burst-{i}", "from": "+821012340000", "body": str(i)},
                settings.sms.webhook_secret)).status for i in range(6)]
            async with http.get(f"{base}/openapi.json") as r1, http.get(f"{base}/openapi.json") as r2, \
                    http.get(f"{base}/openapi.json") as r3:
                limited = [r1.status, r2.status, r3.status]
    finally:
        await ctx.close()
    assert statuses == [200] * 6
    assert limited == [200, 200, 429]
