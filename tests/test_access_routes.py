"""Every route of the app refuses anonymous users and the wrong roles.

Routes are enumerated from the real application (``create_app`` with every ``SETUPS`` entry),
so routes that other features add later are covered without touching this file. A route is
public only if it is allow-listed below with the reason; every other route must refuse an
anonymous request (401, or 302 to /login for pages). A route that declares its roles
(``@requires``) must refuse every other role with 403 and let its own roles past the guard.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio

from ivr.config import Settings
from ivr.web.auth import ROLES
from tests.support.console import PASSWORD, USERS, Console, prepare_settings, serve_console
from tests.support.routes import AppRoute, app_routes

# Routes anyone may call, and why.
PUBLIC = {
    r"^/healthz$": "liveness probe",
    r"^/openapi\.json$": "the API description",
    r"^/api/(login|logout|me)$": "signing in and out (JSON)",
    r"^/(login|logout)$": "the sign-in page and form (logout needs the session's CSRF token)",
    r"^/$": "sends to the user's home page or to /login",
    r"^/static/": "the console's CSS and scripts",
    r"^/(webhooks|sms|hooks)/": "SMS/SNS provider webhooks, authenticated by their signatures",
    r"^/chat(/ws)?$": "the citizens' web chat (citizens have no account)",
    r"^/open311/v2/": "Open311 GeoReport v2 is a public citizen API",
    r"^/call(/manifest\.webmanifest|/sw\.js)?$": "the citizens' call page (a PWA; citizens have no account)",
    r"^/metrics$": "Prometheus scrape: 404 unless metrics.enabled, then only from metrics.allow addresses and "
                   "with metrics.token as a bearer token (ivr.web.metrics; tests/test_metrics.py)",
    r"^/api/webcall/": "the /call page's API: one-time page tokens, per-address limits, the call's own "
                       "credential checked inside (docs/webrtc.md)",
}
# Not public, but signed in two ways (a department's API key, or an agent session checked inside):
# anonymous callers must still be refused; the role check is the inner handler's.
OWN_AUTH = {
    r"^/api/open311/requests/[^/]+/status$": "department API key (X-Api-Key) or an agent/supervisor session",
}
pytestmark = pytest.mark.asyncio(loop_scope="module")
ROLE_USER = {role: name for name, (role, _lang) in USERS.items()}
MINE = re.compile(r"^/(console|api/console|ws/console)(/|$)")


def _public(route: AppRoute) -> bool:
    return any(re.search(p, route.template) for p in PUBLIC)


@dataclass
class Rig:
    console: Console
    routes: list[AppRoute]
    anonymous: aiohttp.ClientSession
    signed_in: dict[str, tuple[aiohttp.ClientSession, str]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """One app for the module: these tests only read (every request is refused or harmless)."""
    tmp = tmp_path_factory.mktemp("access")
    settings = Settings()
    settings.data_dir = tmp / "var"
    settings.database.url = f"sqlite+aiosqlite:///{tmp / 'access.db'}"
    settings.recordings.dir = tmp / "recordings"
    settings.ami.enabled = False
    settings.web.rate_limit_per_minute = 0
    async with serve_console(prepare_settings(settings, tmp)) as console:
        from ivr.web.app import create_app

        routes = app_routes(create_app(console.ctx))
        anonymous = aiohttp.ClientSession()
        signed_in = {}
        try:
            for role in ROLES:
                s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                signed_in[role] = (s, "")
                async with s.post(f"{console.url}/api/login",
                                  json={"username": ROLE_USER[role], "password": PASSWORD}) as r:
                    assert r.status == 200, await r.text()
                    signed_in[role] = (s, (await r.json())["csrf_token"])
            yield Rig(console, routes, anonymous, signed_in)
        finally:
            await anonymous.close()
            for s, _ in signed_in.values():
                await s.close()


async def _call(session: aiohttp.ClientSession, method: str, url: str, csrf: str = "") -> tuple[int, str]:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    async with session.request(method, url, allow_redirects=False, headers=headers) as r:
        await r.read()
        return r.status, r.headers.get("Location", "")


async def test_every_route_refuses_anonymous_users(rig: Rig) -> None:
    problems, checked = [], 0
    for route in rig.routes:
        if _public(route):
            continue
        status, location = await _call(rig.anonymous, route.method, route.url(rig.console.url))
        checked += 1
        if status == 401 or (status in (302, 303) and location.startswith("/login")):
            continue
        problems.append(f"{route.method} {route.template}: anonymous got {status} {location}")
    assert checked >= 30, f"only {checked} protected routes found"
    assert not problems, "\n".join(problems)


async def test_every_route_with_roles_refuses_the_other_roles(rig: Rig) -> None:
    problems, checked = [], 0
    for route in rig.routes:
        if _public(route):
            continue
        if route.roles is None and any(re.search(p, route.template) for p in OWN_AUTH):
            continue
        if route.roles is None:
            problems.append(f"{route.method} {route.template}: not public and declares no roles (@requires)")
            continue
        for role in ROLES:
            if role == "admin" or role in route.roles:
                continue
            session, csrf = rig.signed_in[role]
            status, _ = await _call(session, route.method, route.url(rig.console.url), csrf)
            checked += 1
            if status != 403:
                problems.append(f"{route.method} {route.template}: role {role} got {status}; allowed {route.roles}")
    assert checked >= 20
    assert not problems, "\n".join(problems)


async def test_console_routes_let_their_own_roles_through(rig: Rig) -> None:
    """The guard is not simply closed: each allowed role (and admin) gets past it on our routes."""
    problems, checked = [], 0
    for route in rig.routes:
        if not MINE.match(route.template) or route.roles is None:
            continue
        for role in {*route.roles, "admin"}:
            session, csrf = rig.signed_in[role]
            status, location = await _call(session, route.method, route.url(rig.console.url), csrf)
            checked += 1
            if status in (401, 403) or location.startswith("/login"):
                problems.append(f"{route.method} {route.template}: role {role} got {status}")
    assert checked >= 20
    assert not problems, "\n".join(problems)


async def test_pages_send_anonymous_users_to_sign_in_and_back(rig: Rig) -> None:
    for page in ("/console/agent", "/console/admin", "/console/reviewer", "/console/wallboard"):
        status, location = await _call(rig.anonymous, "GET", rig.console.url + page + "?x=1")
        assert (status, location) == (302, f"/login?next={page}?x%3D1")  # the whole path and query


async def test_unsafe_requests_without_the_csrf_token_are_refused(rig: Rig) -> None:
    session, _ = rig.signed_in["admin"]
    refused = 0
    for route in rig.routes:
        if route.method in ("POST", "PUT", "PATCH", "DELETE") and route.roles is not None:
            status, _ = await _call(session, route.method, route.url(rig.console.url))
            assert status == 403, f"{route.method} {route.template}: {status}"
            refused += 1
    assert refused >= 8


async def test_a_page_of_another_role_says_so_in_the_users_language(rig: Rig) -> None:
    session, _ = rig.signed_in["agent"]  # kim.minji reads Korean
    async with session.get(rig.console.url + "/console/admin", allow_redirects=False) as r:
        assert r.status == 403 and r.content_type == "text/html"
        assert "이 화면을 볼 권한이 없습니다." in await r.text()
    session, _ = rig.signed_in["supervisor"]  # super1 reads English
    async with session.get(rig.console.url + "/console/reviewer/recordings/1", allow_redirects=False) as r:
        assert r.status == 200  # supervisors review too
    session, _ = rig.signed_in["reviewer"]
    async with session.get(rig.console.url + "/console/agent", allow_redirects=False) as r:
        assert r.status == 403 and "Your role may not" not in await r.text()  # review1 reads Korean


async def test_pages_refuse_in_json_to_clients_that_accept_json(rig: Rig) -> None:
    """A client whose Accept header names application/json gets a page's refusal as JSON (401
    or 403 with the reason); a browser, or a client sending no Accept at all, gets the redirect
    to sign in or the page that says no."""
    url = rig.console.url + "/console/admin"
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

    async def get(session: aiohttp.ClientSession, accept: str | None) -> tuple[int, str, str, str]:
        headers = {} if accept is None else {"Accept": accept}
        skip = ["Accept"] if accept is None else []  # aiohttp sends Accept: */* unless told not to
        async with session.get(url, headers=headers, skip_auto_headers=skip, allow_redirects=False) as r:
            return r.status, r.content_type, r.headers.get("Location", ""), await r.text()

    for accept in ("application/json", "application/json, text/plain, */*"):
        assert await get(rig.anonymous, accept) == (401, "application/json", "", '{"error": "sign in first"}')
    for accept in (None, browser, "*/*"):
        status, _, location, _ = await get(rig.anonymous, accept)
        assert (status, location) == (302, "/login?next=/console/admin"), accept

    agent, _ = rig.signed_in["agent"]
    assert await get(agent, "application/json") == (403, "application/json", "",
                                                    '{"error": "not allowed for your role"}')
    for accept in (None, browser):
        status, content_type, location, text = await get(agent, accept)
        assert (status, content_type, location) == (403, "text/html", ""), accept
        assert "이 화면을 볼 권한이 없습니다." in text
