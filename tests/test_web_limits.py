"""Request size and rate limits (ivr.web.limits): per-route body limits, the token bucket's
wait and its pruning (controlled clock), and the middleware over real HTTP: off at 0, on at 1,
and its refusals in the form of the path's error document (Open311's list of errors)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.web import limits
from ivr.web.app import create_app
from ivr.web.limits import Handler, RateLimiter, body_limit
from tests.support.web import serve


def test_body_limit_is_the_smaller_of_the_route_limit_and_the_default() -> None:
    assert body_limit("/api/messaging/conversations/1/reply", 10 * 1024 * 1024) == 256 * 1024
    assert body_limit("/api/messaging/conversations/1/reply", 1000) == 1000
    assert body_limit("/webhooks/sms/status", 10 * 1024 * 1024) == 64 * 1024
    assert body_limit("/api/console/contacts/1", 5000) == 5000  # no route limit


def test_waiting_time_counts_the_part_of_a_token_already_refilled() -> None:
    now = [50.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one token a second, 60 at most
    key = ("10.0.0.1", "GET /x")
    assert all(limiter.take(key) == 0.0 for _ in range(60))
    assert limiter.take(key) == pytest.approx(1.0)
    now[0] += 0.25
    assert limiter.take(key) == pytest.approx(0.75)
    now[0] += 0.75
    assert limiter.take(key) == 0.0


def test_idle_buckets_are_dropped_once_there_are_too_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 3)
    now = [0.0]
    limiter = RateLimiter(120, clock=lambda: now[0])  # an empty bucket refills in 60 s
    limiter.take(("a", "r"))
    now[0] = 30.0
    limiter.take(("b", "r"))
    now[0] = 90.0  # a: 90 s idle (full again, forgettable); b: exactly 60 s (kept)
    limiter.take(("c", "r"))
    assert set(limiter.buckets) == {("a", "r"), ("b", "r"), ("c", "r")}  # 3: not over the limit yet
    limiter.take(("d", "r"))
    assert set(limiter.buckets) == {("b", "r"), ("c", "r"), ("d", "r")}
    now[0] = 90.5
    limiter.take(("e", "r"))
    assert set(limiter.buckets) == {("c", "r"), ("d", "r"), ("e", "r")}  # b is 60.5 s idle now


@pytest.fixture
async def http(tmp_path: Path, sqlite_url: str) -> AsyncIterator[tuple[Settings, aiohttp.ClientSession]]:
    settings = Settings()
    settings.data_dir = tmp_path / "var"
    settings.database.url = sqlite_url
    async with aiohttp.ClientSession() as session:
        yield settings, session


async def _statuses(settings: Settings, http: aiohttp.ClientSession, path: str,
                    times: int) -> list[tuple[int, str | None, object]]:
    ctx = AppContext(settings, Database(settings.database.url), MemoryBus())
    answers = []
    try:
        async with serve(ctx) as base:
            for _ in range(times):
                async with http.get(f"{base}{path}") as r:
                    answers.append((r.status, r.headers.get("Retry-After"), await r.json(content_type=None)))
    finally:
        await ctx.close()
    return answers


async def test_a_limit_of_zero_turns_rate_limiting_off(http: tuple[Settings, aiohttp.ClientSession]) -> None:
    settings, session = http
    settings.web.rate_limit_per_minute = 0
    answers = await _statuses(settings, session, "/openapi.json", 5)
    assert [status for status, _, _ in answers] == [200] * 5


async def test_a_limit_of_one_allows_one_request_a_minute(http: tuple[Settings, aiohttp.ClientSession]) -> None:
    settings, session = http
    settings.web.rate_limit_per_minute = 1
    answers = await _statuses(settings, session, "/openapi.json", 2)
    assert [(status, retry) for status, retry, _ in answers] == [(200, None), (429, "60")]
    assert answers[1][2] == {"error": "too many requests; slow down"}


async def test_a_refusal_under_open311_is_an_open311_error_list(http: tuple[Settings, aiohttp.ClientSession]) -> None:
    settings, session = http
    settings.web.rate_limit_per_minute = 1
    answers = await _statuses(settings, session, "/open311/v2/services.json", 2)
    assert answers[0][0] == 200
    assert answers[1] == (429, "60", [{"code": 429, "description": "too many requests; slow down"}])


async def test_limits_run_before_every_other_middleware_inside_the_error_one(
        http: tuple[Settings, aiohttp.ClientSession]) -> None:
    """Refused early (no session lookup for a flood), yet in the path's error form."""
    settings, _session = http
    ctx = AppContext(settings, Database(settings.database.url), MemoryBus())
    try:
        app = create_app(ctx)
        names = [getattr(m, "__name__", "") for m in app.middlewares]
        assert names[:2] == ["error_middleware", "limits_middleware"] and len(names) > 2

        @web.middleware
        async def other(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await handler(request)

        bare = web.Application(middlewares=[other])  # no error middleware: limits go first
        limits.setup(bare, ctx)
        assert [getattr(m, "__name__", "") for m in bare.middlewares] == ["limits_middleware", "other"]
    finally:
        await ctx.close()
