"""Sessions, sign-in and the browser-facing edges of the web app (issue #21 items 3, 4, 7, 10 and
the low findings on cookies, login CSRF and version headers), on the real app over a real
socket with SQLite and PostgreSQL.

Every old cookie must stop working once its user signs out, has the password reset, the role
changed or the account disabled; forged, expired and CSRF-less requests are refused; sign-in is
throttled per account and per address across both sign-in routes and checks passwords off the
event loop at the same cost for unknown users; redirects after sign-in stay on this site; and
WebSockets refuse pages of other origins (scheme, host and port compared)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from yarl import URL

from ivr.config import Settings
from ivr.db.models import AuditLog, User
from ivr.web import auth
from ivr.web.auth import COOKIE, create_user, decode_session, encode_session, safe_next, set_active
from ivr.web.throttle import LoginThrottle
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console


@pytest.fixture
async def console(settings: Settings, db_url: str, tmp_path: Path) -> AsyncIterator[Console]:
    settings.database.url = db_url  # SQLite and PostgreSQL in turn
    settings.web.login_free_failures = 3
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        yield c


class Browser:
    """One signed-in client: its own cookie jar and the CSRF token its sign-in returned."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def sign_in(self, username: str, password: str = PASSWORD) -> int:
        async with self.http.post(f"{self.console.url}/api/login",
                                  json={"username": username, "password": password}) as r:
            if r.status == 200:
                self.csrf = (await r.json())["csrf_token"]
            return r.status

    async def status(self, method: str, path: str, csrf: str | None = None, **kw: Any) -> int:
        headers = {"Accept": "application/json"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        async with self.http.request(method, self.console.url + path, headers=headers,
                                     allow_redirects=False, **kw) as r:
            await r.read()
            return r.status

    def cookie(self) -> str:
        return next(c.value for c in self.http.cookie_jar if c.key == COOKIE)


@pytest.fixture
async def browsers(console: Console) -> AsyncIterator[Any]:
    made: list[Browser] = []

    async def make(username: str | None = None) -> Browser:
        b = Browser(console)
        made.append(b)
        if username:
            assert await b.sign_in(username) == 200
        return b

    yield make
    for b in made:
        await b.http.close()


async def test_old_cookies_end_with_logout_password_role_and_deactivation(console: Console, browsers: Any) -> None:
    ctx = console.ctx
    # Sign-out ends every session of that user, not only the one that signed out.
    first, second = await browsers("kim.minji"), await browsers("kim.minji")
    assert await second.status("GET", "/api/console/inbox") == 200
    assert await first.status("POST", "/api/logout", csrf=first.csrf) == 200
    assert await second.status("GET", "/api/console/inbox") == 401
    assert await second.status("GET", "/api/me") == 401

    # A password reset (dasan user add on an existing user) ends the old sessions.
    third = await browsers("kim.minji")
    assert await third.status("GET", "/api/me") == 200
    await create_user(ctx, "kim.minji", "a-new-password-1", "agent")
    assert await third.status("GET", "/api/console/inbox") == 401
    assert await third.sign_in("kim.minji") == 401  # the old password is gone too
    assert await third.sign_in("kim.minji", "a-new-password-1") == 200

    # A role downgrade: through create_user, and even when the row is changed behind our back.
    boss = await browsers("super1")
    assert await boss.status("GET", "/api/console/admin/history") == 200
    async with ctx.db.transaction() as session:
        await session.execute(update(User).where(User.username == "super1").values(role="agent"))
    assert await boss.status("GET", "/api/console/admin/history") == 401
    assert await boss.status("GET", "/api/me") == 401

    # Deactivation: the admin's cookie stops working at once, and signing in is refused.
    admin = await browsers("admin1")
    assert await admin.status("GET", "/api/console/admin/history") == 200
    assert await set_active(ctx, "admin1", False)
    assert await admin.status("GET", "/api/console/admin/history") == 401
    assert await admin.sign_in("admin1") == 401
    async with ctx.db.session() as session:
        failures = [(a.actor, a.data.get("reason")) for a in (await session.execute(
            select(AuditLog).where(AuditLog.action == "sign_in_failed").order_by(AuditLog.id))).scalars()]
    assert ("admin1", "inactive") in failures and ("kim.minji", "wrong password") in failures
    assert await set_active(ctx, "admin1", True)
    assert await admin.sign_in("admin1") == 200


async def test_forged_expired_cookies_and_wrong_csrf_tokens_are_refused(console: Console, browsers: Any) -> None:
    ctx = console.ctx
    agent = await browsers("kim.minji")
    cookie = agent.cookie()
    user = decode_session(ctx.settings.web.secret_key, cookie)
    assert user is not None and user.role == "agent"

    async def me(cookie_value: str) -> int:
        async with aiohttp.ClientSession() as anon, anon.get(
                f"{console.url}/api/me", headers={"Cookie": f"{COOKIE}={cookie_value}"}) as r:
            return r.status

    assert await me(cookie) == 200
    payload, _, signature = cookie.partition(".")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    promoted = encode_session("not-the-secret", replace(user, role="admin"))
    expired = encode_session(ctx.settings.web.secret_key, replace(user, expires=time.time() - 1))
    unversioned = encode_session(ctx.settings.web.secret_key, replace(user, version=user.version + 1))
    for forged in (f"{payload}.{flipped}", promoted, expired, unversioned, payload, "x", "é." + signature):
        assert await me(forged) == 401, forged

    # Every wrong CSRF value (none, empty, another session's, one character off, non-ASCII) is
    # refused on an unsafe request, and the command is not queued.
    other = await browsers("kim.minji")
    wrong = [None, "", " ", "x", other.csrf, agent.csrf + "a", agent.csrf[:-1], agent.csrf.upper(),
             "토큰" * 8, agent.csrf[::-1]]
    for token in wrong:
        status = await agent.status("POST", "/api/console/agent/state", csrf=token, json={"action": "login"})
        assert status == 403, token
    assert await agent.status("POST", "/api/console/agent/state", csrf=agent.csrf, json={"action": "login"}) == 202
    jobs = await ctx.bus.consume("agent.commands", "t", "t", count=50, block=2)
    assert [j.data for j in jobs] == [{"action": "login", "username": "kim.minji"}]


async def test_login_csrf_logout_csrf_and_secure_cookie(console: Console, browsers: Any) -> None:
    plain = await browsers()
    # A cross-site form can post text/plain or urlencoded without asking: only JSON signs in.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        async with plain.http.post(f"{console.url}/api/login", headers={"Content-Type": content_type},
                                   data=json.dumps({"username": "kim.minji", "password": PASSWORD})) as r:
            assert r.status == 415, content_type
    assert not list(plain.http.cookie_jar)

    agent = await browsers("kim.minji")
    assert await agent.status("POST", "/api/logout") == 403  # no CSRF token: still signed in
    assert await agent.status("GET", "/api/me") == 200
    assert await agent.status("POST", "/api/logout", csrf=agent.csrf) == 200
    assert await agent.status("GET", "/api/me") == 401

    # Behind a trusted TLS proxy the cookie is Secure; the same header from anyone else is ignored.
    async def cookie_flags(proto: str) -> str:
        async with aiohttp.ClientSession() as s, s.post(
                f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD},
                headers={"X-Forwarded-Proto": proto}) as r:
            assert r.status == 200
            return r.headers["Set-Cookie"]

    assert "Secure" not in await cookie_flags("https")
    console.ctx.settings.web.trusted_proxies = ["127.0.0.0/8"]
    assert "Secure" in await cookie_flags("https")
    assert "Secure" not in await cookie_flags("http")
    # Or configured: a site whose public origin (web.public_url) is https always sets Secure.
    console.ctx.settings.web.trusted_proxies = []
    console.ctx.settings.web.public_url = "https://dasan.example"
    assert "Secure" in await cookie_flags("http")


async def test_no_versions_announced(console: Console) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{console.url}/healthz") as r:
            assert r.status == 200 and await r.json() == {"status": "ok"}
            assert r.headers["Server"] == "dasan" and r.headers["X-Content-Type-Options"] == "nosniff"
        async with s.get(f"{console.url}/no-such-page") as r:
            assert r.status == 404 and r.headers["Server"] == "dasan"


async def test_sign_in_is_throttled_across_both_routes_and_audited(console: Console, browsers: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Which thread checks each password (the real argon2 verify, only observed).
    threads: list[int] = []
    real_verify = auth.verify_password

    def observed(stored: str, password: str) -> bool:
        threads.append(threading.get_ident())
        return real_verify(stored, password)

    monkeypatch.setattr(auth, "verify_password", observed)
    # The throttle's clock stands still unless the test moves it: however slow argon2 is here,
    # the 2 s wait after the third failure is not over before the fourth try.
    now = [1000.0]
    console.ctx.monotonic = lambda: now[0]
    b = await browsers()
    assert await b.sign_in("kim.minji", "wrong-1") == 401
    async with b.http.post(f"{console.url}/login", data={"username": "kim.minji", "password": "wrong-2"},
                           allow_redirects=False) as r:
        assert r.status == 401
    assert await b.sign_in("nobody-here", "wrong-3") == 401  # unknown user: a password is still checked
    assert len(threads) == 3 and threading.get_ident() not in threads  # never on the event loop

    # Three failures from this address (login_free_failures = 3): the next attempt must wait,
    # on either route, whatever the password; the answer says how long.
    async with b.http.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    async with b.http.post(f"{console.url}/login", data={"username": "super1", "password": PASSWORD},
                           allow_redirects=False) as r:
        assert r.status == 429 and "Retry-After" in r.headers
    now[0] += 1.9  # still inside the wait: refused, told to come back in a second
    async with b.http.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "1"
    assert len(threads) == 3  # refused before any password was checked
    async with console.ctx.db.session() as session:
        rows = [(a.action, a.actor) for a in (await session.execute(
            select(AuditLog).where(AuditLog.action.like("sign_in%")).order_by(AuditLog.id))).scalars()]
    assert rows == [("sign_in_failed", "kim.minji"), ("sign_in_failed", "kim.minji"),
                    ("sign_in_failed", "nobody-here"), ("sign_in_throttled", "kim.minji")]
    # (one row per wait and key: a flood of refused attempts would only load the database)
    now[0] += 0.2  # the wait is over: the right password is checked and taken
    async with b.http.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
        assert r.status == 200
    assert len(threads) == 4


def test_throttle_waits_grow_per_account_and_address() -> None:
    now = [1000.0]
    throttle = LoginThrottle(free=2, max_delay=60, clock=lambda: now[0])
    for _ in range(2):
        assert throttle.wait("kim", "10.0.0.1") == 0
        throttle.failed("kim", "10.0.0.1")
    assert throttle.wait("lee", "10.0.0.1") == 2  # per address: another account from it waits
    assert throttle.wait("lee", "10.0.0.2") == 0
    waits = []
    for _ in range(6):
        waits.append(throttle.wait("kim", "10.0.0.9"))  # per account: another address waits too
        now[0] += waits[-1]
        throttle.failed("kim", "10.0.0.9")
    assert waits == [2, 4, 8, 16, 32, 60]
    assert throttle.wait("lee", "10.0.0.9") > 0
    throttle.succeeded("kim")
    assert throttle.wait("kim", "10.0.0.3") == 0
    now[0] += 61  # a quiet spell longer than the longest wait forgets the failures
    assert throttle.wait("lee", "10.0.0.9") == 0


@pytest.mark.parametrize("target", [
    "/\t/127.0.0.1:38091/phish", "//127.0.0.1:38091/phish", "/\\127.0.0.1/phish", "\\\\evil.example",
    "/%2F127.0.0.1/phish", "%2F%2Fevil.example", "/%5Cevil.example", "/%252F%252Fevil.example",
    "/\r\n/evil.example", "https://evil.example/", "javascript:alert(1)", "evil.example", "/ /evil.example",
    "/%09/evil.example", "//[evil.example", "//%5b", "%2F%2F%5B", "//]",
    "/console/\tagent", "/console\\agent",  # harmless once cleaned, but not as sent
    "/x%25252525C3%25252525A9",  # still changing after five rounds of decoding
    "", None])
def test_next_refuses_everything_that_leaves_the_site(target: str | None) -> None:
    assert safe_next(target) is None


def test_next_keeps_paths_of_this_site() -> None:
    for target in ("/console/wallboard", "/console/reviewer?q=%EB%B2%84%EC%8A%A4&x=1", "/api/console/kb?q=a%2Fb",
                   "/x%252525C3%252525A9"):  # four rounds of decoding, then it stands
        assert safe_next(target) == target


async def test_open_redirect_of_the_issue_goes_home(console: Console) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{console.url}/login?next=%2F%09%2F127.0.0.1:38091%2Fphish") as r:
            page = await r.text()
            assert r.status == 200 and "127.0.0.1:38091" not in page
        # An unclosed IPv6 host ("//[") once made the sign-in page fail with a 500.
        async with s.get(f"{console.url}/login?next=%2F%2F%255b") as r:
            assert r.status == 200 and "%5b" not in await r.text()
        async with s.post(f"{console.url}/login", allow_redirects=False, data={
                "username": "kim.minji", "password": PASSWORD, "next": "/\t/127.0.0.1:38091/phish"}) as r:
            assert r.status == 302 and r.headers["Location"] == "/console/agent"
    # A page behind the sign-in sends back to itself, query and all (once it was cut at "&").
    async with aiohttp.ClientSession() as anon, anon.get(f"{console.url}/console/wallboard?a=1&b=2",
                                                           allow_redirects=False) as r:
        location = URL(r.headers["Location"])
        assert r.status == 302 and location.path == "/login"
        assert location.query["next"] == "/console/wallboard?a=1&b=2"


WEBSOCKETS = ["/ws/console/agent", "/ws/console/wallboard", "/api/messaging/agent/ws", "/chat/ws"]


async def test_websockets_refuse_other_origins(console: Console, browsers: Any) -> None:
    agent = await browsers("kim.minji")
    port = int(console.url.rsplit(":", 1)[1])
    console.ctx.settings.web.public_url = "https://dasan.example"
    foreign = ["https://evil.example", f"http://127.0.0.1:{port + 1}", "http://127.0.0.1:9999",
               f"https://127.0.0.1:{port}", "http://dasan.example", "https://dasan.example:8443", "null"]
    for path in WEBSOCKETS:
        for origin in foreign:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await agent.http.ws_connect(console.url + path, headers={"Origin": origin})
            assert refused.value.status == 403, (path, origin)
        for origin in (console.url, f"http://localhost:{port}".replace("localhost", "127.0.0.1"),
                       "https://dasan.example", "https://dasan.example:443"):
            ws = await agent.http.ws_connect(console.url + path, headers={"Origin": origin})
            await ws.close()


async def test_behind_a_trusted_proxy_the_throttle_counts_each_client(console: Console) -> None:
    console.ctx.settings.web.trusted_proxies = ["127.0.0.0/8"]
    now = [1000.0]  # the throttle's clock, moved only by this test (argon2's pace does not matter)
    console.ctx.monotonic = lambda: now[0]

    async def attempt(client: str, username: str, password: str) -> int:
        async with aiohttp.ClientSession() as s, s.post(
                f"{console.url}/api/login", json={"username": username, "password": password},
                headers={"X-Forwarded-For": f"{client}, 127.0.0.2"}) as r:
            return r.status

    for i in range(3):
        assert await attempt("203.0.113.7", f"guess-{i}", "wrong") == 401
    now[0] += 1.9
    assert await attempt("203.0.113.7", "kim.minji", PASSWORD) == 429  # that client waits
    assert await attempt("198.51.100.4", "kim.minji", PASSWORD) == 200  # another one does not
    now[0] += 0.2
    assert await attempt("203.0.113.7", "kim.minji", PASSWORD) == 200  # and the first, once its wait is over
    async with console.ctx.db.session() as session:
        ips = {a.ip for a in (await session.execute(select(AuditLog).where(
            AuditLog.action.like("sign_in%")))).scalars()}
    assert ips == {"203.0.113.7", "198.51.100.4"}


def _as_a_browser_resolves(location: str) -> str:
    """The host a browser goes to for ``Location: location`` on https://site.example/page
    (WHATWG URL: tabs and newlines removed, C0 controls and spaces trimmed, "\\" read as "/")."""
    from urllib.parse import urljoin, urlsplit

    cleaned = "".join(ch for ch in location if ch not in "\t\n\r").strip("".join(map(chr, range(0x21))))
    return urlsplit(urljoin("https://site.example/page", cleaned.replace("\\", "/"))).netloc


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from([*"/\\%:@.?#\t\n\r\x00 ab2F5C09", "%2F", "%5C", "%09", "%25", "//", "http:"]),
                max_size=16).map("".join))
def test_next_never_leaves_the_site_as_a_browser_reads_it(target: str) -> None:
    kept = safe_next(target)
    if kept is not None:
        assert kept == target and _as_a_browser_resolves(kept) == "site.example", target


def test_parallel_attempts_are_counted_before_they_are_checked() -> None:
    throttle = LoginThrottle(free=3, max_delay=60, clock=lambda: 1000.0)
    # Twenty guesses arriving together: only the free ones get through, before any has failed.
    assert [throttle.attempt("kim", "10.0.0.1") == 0 for _ in range(20)] == [True] * 3 + [False] * 17
    # One audit row per wait, not one per refused request of a flood.
    assert [throttle.refused("kim", "10.0.0.1") for _ in range(3)] == [True, False, False]
    throttle.failed("kim", "10.0.0.1")
    assert throttle.refused("kim", "10.0.0.1") is True
    fresh = LoginThrottle(free=3, max_delay=60, clock=lambda: 1000.0)
    for _ in range(10):  # right passwords give their count back: a user is never slowed by them
        assert fresh.attempt("kim", "10.0.0.1") == 0
        fresh.succeeded("kim", "10.0.0.1")


async def test_a_burst_of_parallel_guesses_gets_only_the_free_tries(console: Console) -> None:
    async with aiohttp.ClientSession() as s:
        async def guess(i: int) -> int:
            async with s.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": f"w{i}"}) as r:
                return r.status

        statuses = await asyncio.gather(*[guess(i) for i in range(20)])
    assert sorted(statuses) == [401] * 3 + [429] * 17  # login_free_failures = 3


async def test_the_sign_out_form_ends_every_session_only_with_the_token(console: Console, browsers: Any) -> None:
    """POST /logout (the console's sign-out button, a form): the CSRF token in the form, then
    every session of that user ends, the cookie is cleared and the sign-in page follows."""
    first, second = await browsers("kim.minji"), await browsers("kim.minji")
    async with first.http.get(f"{console.url}/api/me") as r:  # who the page is signed in as
        assert await r.json() == {"username": "kim.minji", "role": "agent", "language": "ko", "csrf_token": first.csrf}
    async with first.http.post(f"{console.url}/logout", data={"csrf_token": "not-it"}, allow_redirects=False) as r:
        assert (r.status, r.content_type) == (403, "application/json")
        assert await r.json() == {"error": "missing or wrong CSRF token"}
    assert await second.status("GET", "/api/me") == 200
    async with first.http.post(f"{console.url}/logout", data={"csrf_token": first.csrf}, allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/login"
        assert r.cookies[COOKIE].value == "" and r.cookies[COOKIE]["max-age"] == "0"
    assert await second.status("GET", "/api/me") == 401  # the other browser's session ended too
    async with console.ctx.db.session() as session:
        outs = [(a.actor, a.ip) for a in (await session.execute(
            select(AuditLog).where(AuditLog.action == "sign_out"))).scalars()]
    assert outs == [("kim.minji", "127.0.0.1")]
    # Signed out already (or never signed in): straight to the sign-in page, nothing audited.
    async with aiohttp.ClientSession() as anon, anon.post(f"{console.url}/logout", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/login"
    async with console.ctx.db.session() as session:
        assert len((await session.execute(select(AuditLog).where(AuditLog.action == "sign_out"))).all()) == 1


def test_a_refused_sign_in_waits_whole_seconds_and_never_less_than_one() -> None:
    assert [auth.Throttled(wait).retry_after for wait in (0.01, 1.0, 1.2, 2.5, 59.0)] == [1, 1, 2, 3, 59]
    assert str(auth.Throttled(2.4)) == "retry after 2 s"


def test_next_keeps_a_path_up_to_2000_characters() -> None:
    longest = "/console/reviewer?q=" + "a" * (2000 - len("/console/reviewer?q="))
    assert len(longest) == 2000 and safe_next(longest) == longest
    assert safe_next(longest + "a") is None


async def test_refusals_say_why_in_json_and_pages_send_to_sign_in_and_back(console: Console, browsers: Any) -> None:
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{console.url}/api/console/inbox") as r:
            assert (r.status, r.content_type, await r.json()) == (401, "application/json", {"error": "sign in first"})
        async with anon.get(f"{console.url}/console/wallboard?a=1&b=2", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/login?next=/console/wallboard?a%3D1%26b%3D2"
    reviewer = await browsers("review1")
    async with reviewer.http.get(f"{console.url}/api/console/inbox") as r:
        assert (r.status, r.content_type, await r.json()) == (403, "application/json",
                                                               {"error": "not allowed for your role"})
    # A page of another role, asked for by a browser: the page that says so, not JSON.
    async with reviewer.http.get(f"{console.url}/console/agent") as r:
        assert r.status == 403 and r.content_type == "text/html"
    async with reviewer.http.post(f"{console.url}/console/agent", headers={"X-CSRF-Token": reviewer.csrf}) as r:
        assert r.status in (403, 405) and r.content_type != "text/html"


async def test_the_sign_out_api_answers_in_json_and_audits_who_and_from_where(console: Console,
                                                                              browsers: Any) -> None:
    """POST /api/logout: a wrong token is refused in JSON and changes nothing; the right one ends
    the session, clears the cookie, answers {"ok": true} and leaves one sign_out row with the
    address it came from. Anonymous: the same answer, nothing audited."""
    agent = await browsers("kim.minji")
    async with agent.http.post(f"{console.url}/api/logout", headers={"X-CSRF-Token": "not-it"}) as r:
        assert (r.status, r.content_type, await r.json()) == (403, "application/json",
                                                               {"error": "missing or wrong CSRF token"})
    assert await agent.status("GET", "/api/me") == 200
    async with agent.http.post(f"{console.url}/api/logout", headers={"X-CSRF-Token": agent.csrf}) as r:
        assert (r.status, r.content_type, await r.json()) == (200, "application/json", {"ok": True})
        assert r.cookies[COOKIE].value == "" and r.cookies[COOKIE]["max-age"] == "0"
    assert await agent.status("GET", "/api/me") == 401
    async with aiohttp.ClientSession() as anon, anon.post(f"{console.url}/api/logout") as r:
        assert (r.status, await r.json()) == (200, {"ok": True})

    async with console.ctx.db.session() as session:
        rows = [(a.actor, a.action, a.target, a.ip, a.data) for a in (await session.execute(
            select(AuditLog).where(AuditLog.action != "sign_in").order_by(AuditLog.id))).scalars()]
    assert rows == [("kim.minji", "sign_out", "", "127.0.0.1", {})]


async def test_an_ended_session_never_comes_back(console: Console, browsers: Any) -> None:
    """Sign-out, a password reset and deactivation each end the sessions made before; none of
    them, nor enabling the account again, brings back any session ended earlier, in whatever
    order they come."""
    ctx = console.ctx
    b = await browsers("kim.minji")
    ended: list[str] = []

    async def me(cookie_value: str) -> int:
        async with aiohttp.ClientSession() as anon, anon.get(
                f"{console.url}/api/me", headers={"Cookie": f"{COOKIE}={cookie_value}"}) as r:
            return r.status

    async def still_ended() -> list[int]:
        return [await me(cookie) for cookie in ended]

    ended.append(b.cookie())
    assert await b.status("POST", "/api/logout", csrf=b.csrf) == 200
    assert await still_ended() == [401]

    assert await b.sign_in("kim.minji") == 200
    ended.append(b.cookie())
    await create_user(ctx, "kim.minji", PASSWORD, "agent")  # `dasan user add` again: a reset
    assert await still_ended() == [401, 401]

    assert await b.sign_in("kim.minji") == 200
    ended.append(b.cookie())
    assert await set_active(ctx, "kim.minji", False)
    assert await still_ended() == [401, 401, 401]
    assert await set_active(ctx, "kim.minji", True)
    assert await still_ended() == [401, 401, 401]

    assert await b.sign_in("kim.minji") == 200  # a new session works
    assert await me(b.cookie()) == 200
    # Disabled behind our back (the row changed, the version not): the session ends all the same.
    async with ctx.db.transaction() as session:
        await session.execute(update(User).where(User.username == "kim.minji").values(active=False))
    assert await me(b.cookie()) == 401


async def test_accounts_made_by_create_user_and_unknown_ones(console: Console, browsers: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`dasan user add` for a new account: the display name defaults to the username and the
    language to Korean, the password is hashed in the argon2 pool (not on the event loop nor in
    the default executor), and the account signs in. An unknown role is refused, saying which
    ones exist; enabling or disabling an unknown account says so and creates nothing."""
    ctx = console.ctx
    hashed_on: list[str] = []
    real_hash = auth.hash_password

    def observed(password: str) -> str:
        hashed_on.append(threading.current_thread().name)
        return real_hash(password)

    monkeypatch.setattr(auth, "hash_password", observed)
    made = await create_user(ctx, "park.new", "pw-park-new-1", "reviewer")
    assert (made.username, made.role, made.display_name, made.language) == ("park.new", "reviewer", "park.new", "ko")
    assert len(hashed_on) == 1 and hashed_on[0].startswith("argon2")
    named = await create_user(ctx, "lee.new", "pw-lee-new-1", "supervisor", display_name="이신입", language="en")
    assert (named.username, named.role, named.display_name, named.language) == ("lee.new", "supervisor", "이신입", "en")

    with pytest.raises(ValueError) as refused:
        await create_user(ctx, "root.new", "pw-root-new-1", "root")
    assert str(refused.value) == "role 'root' (expected one of agent, supervisor, admin, reviewer)"
    assert await set_active(ctx, "nobody-here", True) is False
    assert await set_active(ctx, "nobody-here", False) is False

    async with ctx.db.session() as session:
        rows = {u.username: (u.role, u.display_name, u.language, u.active) for u in (await session.execute(
            select(User).where(User.username.in_(["park.new", "lee.new", "root.new", "nobody-here"])))).scalars()}
    assert rows == {"park.new": ("reviewer", "park.new", "ko", True), "lee.new": ("supervisor", "이신입", "en", True)}

    for username, password, role, language in (("park.new", "pw-park-new-1", "reviewer", "ko"),
                                               ("lee.new", "pw-lee-new-1", "supervisor", "en")):
        b = await browsers()
        assert await b.sign_in(username, password) == 200
        async with b.http.get(f"{console.url}/api/me") as r:
            assert await r.json() == {"username": username, "role": role, "language": language,
                                      "csrf_token": b.csrf}


async def test_the_sign_out_form_takes_the_token_from_the_header_or_a_multipart_form(console: Console,
                                                                                      browsers: Any) -> None:
    """A page script may post the sign-out form with the token in X-CSRF-Token (the form then
    holds none), or send the form as multipart/form-data: both sign out like the plain form."""
    by_header, by_multipart = await browsers("kim.minji"), await browsers("kim.minji")
    async with by_header.http.post(f"{console.url}/logout", data={"reason": "done"}, allow_redirects=False,
                                   headers={"X-CSRF-Token": by_header.csrf}) as r:
        assert (r.status, r.headers["Location"]) == (302, "/login")
    assert await by_multipart.sign_in("kim.minji") == 200  # (the sign-out above ended its session)
    form = aiohttp.FormData({"csrf_token": by_multipart.csrf}, default_to_multipart=True)
    async with by_multipart.http.post(f"{console.url}/logout", data=form, allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (302, "/login")
    async with console.ctx.db.session() as session:
        outs = [(a.actor, a.ip) for a in (await session.execute(
            select(AuditLog).where(AuditLog.action == "sign_out").order_by(AuditLog.id))).scalars()]
    assert outs == [("kim.minji", "127.0.0.1"), ("kim.minji", "127.0.0.1")]
    async with by_multipart.http.get(f"{console.url}/api/me") as r:
        assert (r.status, await r.json()) == (401, {"error": "sign in first"})


async def test_sign_in_answers_say_why_in_json_and_the_cookie_is_httponly_lax_for_12_hours(
        console: Console) -> None:
    now = [1000.0]  # the throttle's clock, moved only by this test
    console.ctx.monotonic = lambda: now[0]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{console.url}/api/login", data="username=kim.minji",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert (r.status, await r.json()) == (415, {"error": "send the sign-in as application/json"})
        async with s.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
            assert r.status == 200
            cookie = r.cookies[COOKIE]
            assert (cookie["httponly"], cookie["samesite"].lower(), cookie["max-age"], cookie["path"]) == \
                   (True, "lax", str(12 * 3600), "/")
        for attempt in range(3):  # login_free_failures = 3
            async with s.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": "no"}) as r:
                assert (r.status, await r.json()) == (401, {"error": "wrong username or password"}), attempt
        async with s.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
            assert (r.status, r.headers["Retry-After"], await r.json()) == (
                429, "2", {"error": "too many failed sign-ins; try again later", "retry_after": 2})


async def _raw_status(console: Console, request: bytes) -> int:
    """The status of one request sent as these very bytes (aiohttp's client sends only UTF-8)."""
    url = URL(console.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(request)
        await writer.drain()
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_cookies_and_tokens_that_are_not_utf8_are_refused_not_crashed_on(console: Console,
                                                                                browsers: Any) -> None:
    """Header bytes that are not UTF-8 reach the app as lone surrogates: a cookie or CSRF token
    holding them is wrong like any other (401, 403), never a server error."""
    agent = await browsers("kim.minji")
    payload, _, signature = agent.cookie().partition(".")

    def request(method: str, path: str, cookie: bytes, *extra: bytes) -> bytes:
        return b"\r\n".join([f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1",
                             b"Cookie: " + COOKIE.encode() + b"=" + cookie, *extra,
                             b"Content-Length: 0", b"Connection: close", b"", b""])

    good = f"{payload}.{signature}".encode()
    assert await _raw_status(console, request("GET", "/api/me", good)) == 200
    for bad in (f"{payload}".encode() + b"\xff." + signature.encode(), good + b"\xff"):
        assert await _raw_status(console, request("GET", "/api/me", bad)) == 401, bad
    token = b"X-CSRF-Token: " + agent.csrf.encode() + b"\xff"
    assert await _raw_status(console, request("POST", "/api/logout", good, token)) == 403
    assert await agent.status("GET", "/api/me") == 200  # still signed in


async def test_a_sign_out_form_without_a_readable_token_is_refused(console: Console, browsers: Any) -> None:
    """A malformed form body, or a csrf_token sent as a file, carries no token: 403, signed in."""
    agent = await browsers("kim.minji")
    refused = (403, "application/json", {"error": "missing or wrong CSRF token"})
    async with agent.http.post(f"{console.url}/logout", data=b"--x\r\nnot a part", allow_redirects=False,
                               headers={"Content-Type": "multipart/form-data; boundary=y"}) as r:
        assert (r.status, r.content_type, await r.json()) == refused
    form = aiohttp.FormData()
    form.add_field("csrf_token", agent.csrf.encode(), filename="token.txt", content_type="text/plain")
    async with agent.http.post(f"{console.url}/logout", data=form, allow_redirects=False) as r:
        assert (r.status, r.content_type, await r.json()) == refused
    assert await agent.status("GET", "/api/me") == 200


def test_a_session_ends_at_its_expiry_and_only_the_exact_cookie_form_is_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 32
    user = auth.SessionUser(7, "kim.minji", "agent", "ko", "csrf", 1000.0, 3)
    monkeypatch.setattr(time, "time", lambda: 999.5)
    assert decode_session(secret, encode_session(secret, user)) == user
    monkeypatch.setattr(time, "time", lambda: 1000.0)
    assert decode_session(secret, encode_session(secret, user)) is None  # over at that very instant
    # A payload with a dot, signed with the secret: not the form encode_session makes, refused.
    monkeypatch.setattr(time, "time", lambda: 999.5)
    payload = encode_session(secret, user).partition(".")[0] + "."
    signed = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    assert decode_session(secret, f"{payload}.{signed}") is None
