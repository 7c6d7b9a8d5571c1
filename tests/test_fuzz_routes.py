"""Every HTTP route, as registered by whichever features are present: roles, traversal, size.

- No route answers an anonymous request unless it is declared public below (with why); a
  route that declares roles (``@requires``) refuses every other role with 403.
- Every route with a path parameter is tried with traversal names (``../``, encoded, absolute,
  NUL) as an admin: it never serves a file from outside its folder and never fails with 5xx.
- Every POST/PUT route refuses a body one byte over ``web.max_body_bytes`` with 413 (or a 4xx
  before reading it), and the server goes on answering.

The application is the real one (``create_app`` with every ``SETUPS`` entry) on a real socket.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.web.app import create_app
from ivr.web.auth import ROLES, create_user
from tests.support.routes import app_routes

# Routes anyone may call, and why. Everything else must refuse an anonymous caller.
PUBLIC = [
    (r"^/healthz$", "liveness probe for the load balancer"),
    (r"^/openapi\.json$", "the API description"),
    (r"^/api/(login|logout|me)$", "signing in and out"),
    (r"^/login$", "the sign-in page"),
    (r"^/(static|assets)/", "the console's static files"),
    (r"^/open311/v2/(discovery|services|requests|tokens)", "Open311 GeoReport v2 is a public citizen API"),
    (r"^/open311/v2/media/", "Open311 media_url links citizens receive (unguessable names)"),
    (r"^/(webhooks|sms|hooks)/", "provider webhooks: authenticated by their signature, not a session"),
    (r"^/chat(/ws)?$", "the citizens' web chat: anyone may open a conversation"),
    (r"^/call(/manifest\.webmanifest|/sw\.js)?$", "the citizens' call page (a PWA): anyone may call"),
    (r"^/api/webcall/", "the /call page's API: one-time page tokens, per-address limits, the call's credential"),
    (r"^/metrics$", "Prometheus scrape: 404 unless metrics.enabled, then only allowed addresses with the bearer "
                    "token (tests/test_metrics.py)"),
]
NOT_TRIED = ("HEAD", "OPTIONS", "*")  # methods these tests do not try
# Routes that never read a body, so a big one changes nothing and may be answered normally.
IGNORE_BODY = [r"^/api/logout$"]
TRAVERSALS = ["../../../../etc/passwd", "..%2f..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
              "/etc/passwd", "....//....//etc/passwd", "a%00.wav", "..\\..\\..\\etc\\passwd",
              "%252e%252e%252fetc%252fpasswd"]


def _public(path: str) -> bool:
    return any(re.search(pattern, path) for pattern, _ in PUBLIC)


@dataclass
class Rig:
    base: str
    app: web.Application
    sessions: dict[str, tuple[aiohttp.ClientSession, str]]  # role -> (session with cookie, csrf token)
    anonymous: aiohttp.ClientSession


@pytest.fixture
async def live(settings: Settings, sqlite_url: str) -> AsyncIterator[Rig]:
    settings.web.max_body_bytes = 64 * 1024
    ctx = AppContext(settings, Database(sqlite_url), MemoryBus())
    for role in ROLES:
        await create_user(ctx, f"fuzz-{role}", "fuzz-password-1", role)
    app = create_app(ctx)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    sessions = {}
    for role in ROLES:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1
        async with s.post(f"{base}/api/login", json={"username": f"fuzz-{role}", "password": "fuzz-password-1"}) as r:
            assert r.status == 200, await r.text()
            csrf = (await r.json())["csrf_token"]
        sessions[role] = (s, csrf)
    anonymous = aiohttp.ClientSession()
    try:
        yield Rig(base, app, sessions, anonymous)
    finally:
        for s, _ in sessions.values():
            await s.close()
        await anonymous.close()
        await server.close()
        await ctx.db.dispose()


async def _status(session: aiohttp.ClientSession, method: str, url: str, **kw: object) -> tuple[int, bytes, str]:
    async with session.request(method, url, allow_redirects=False, **kw) as r:  # type: ignore[arg-type]
        return r.status, await r.read(), r.headers.get("Location", "")


async def test_no_route_is_reachable_without_its_role(live: Rig) -> None:
    problems = []
    checked = 0
    for route in app_routes(live.app, skip=NOT_TRIED):
        url = route.url(live.base)
        if _public(route.template):
            continue
        status, _, location = await _status(live.anonymous, route.method, url)
        checked += 1
        if not (status in (401, 403) or (status in (302, 303) and "/login" in location)):
            problems.append(f"{route.method} {route.template}: anonymous got {status}")
        if route.roles is None:
            continue
        for role in ROLES:
            if role == "admin" or role in route.roles:
                continue
            s, csrf = live.sessions[role]
            status, _, _ = await _status(s, route.method, url, headers={"X-CSRF-Token": csrf})
            if status != 403:
                problems.append(f"{route.method} {route.template}: role {role} got {status}, allowed are {route.roles}")
    assert checked, "no protected route registered at all"
    assert not problems, "\n".join(problems)


async def test_unsafe_requests_need_the_csrf_token(live: Rig) -> None:
    problems = []
    s, _ = live.sessions["admin"]
    for route in app_routes(live.app, skip=NOT_TRIED):
        if route.method not in ("POST", "PUT", "PATCH", "DELETE") or route.roles is None:
            continue
        status, _, _ = await _status(s, route.method, route.url(live.base), json={})
        if status != 403:
            problems.append(f"{route.method} {route.template}: without CSRF token got {status}")
    assert not problems, "\n".join(problems)


async def test_path_traversal_never_serves_outside_files(live: Rig) -> None:
    problems = []
    s, csrf = live.sessions["admin"]
    tried = 0
    for route in app_routes(live.app, skip=NOT_TRIED):
        if "{" not in route.template or route.method != "GET":
            continue
        for evil in TRAVERSALS:
            url = route.url(live.base, evil)
            tried += 1
            try:
                status, body, _ = await _status(s, "GET", url, headers={"X-CSRF-Token": csrf})
            except aiohttp.InvalidURL:
                continue
            if status >= 500:
                problems.append(f"GET {route.template} with {evil!r}: {status}")
            if b"root:x:0:0" in body or b"[boot loader]" in body:
                problems.append(f"GET {route.template} with {evil!r}: served a system file")
    assert tried, "no GET route with a path parameter"
    assert not problems, "\n".join(problems)


async def test_oversized_bodies_are_refused_and_the_server_goes_on(live: Rig) -> None:
    problems = []
    s, csrf = live.sessions["admin"]
    limit = 64 * 1024
    big = b"x" * (limit + 1)
    for route in app_routes(live.app, skip=NOT_TRIED):
        if route.method not in ("POST", "PUT", "PATCH"):
            continue
        if any(re.search(p, route.template) for p in IGNORE_BODY):
            continue
        url = route.url(live.base)
        for content_type, body in (("application/json", b'{"a": "' + big + b'"}'),
                                   ("application/x-www-form-urlencoded", b"a=" + big)):
            status, _, _ = await _status(s, route.method, url, data=body,
                                         headers={"X-CSRF-Token": csrf, "Content-Type": content_type})
            if 400 <= status < 500:  # 413, or refused before the body was read
                continue
            problems.append(f"{route.method} {route.template} ({content_type}): {limit + 1}+ bytes got {status}")
        form = aiohttp.FormData()
        form.add_field("csrf_token", csrf)
        form.add_field("file", big, filename="big.wav", content_type="audio/wav")
        status, _, _ = await _status(s, route.method, url, data=form, headers={"X-CSRF-Token": csrf})
        if not 400 <= status < 500:
            problems.append(f"{route.method} {route.template} (multipart upload): {limit + 1}+ bytes got {status}")
    status, _, _ = await _status(live.anonymous, "GET", live.base + "/healthz")
    assert status == 200, "the server stopped answering"
    assert not problems, "\n".join(problems)
