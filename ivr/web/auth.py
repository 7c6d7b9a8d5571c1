"""Sign-in, sessions, CSRF and roles for every HTTP route that a person uses.

Sessions are signed cookies (HMAC-SHA256 with ``web.secret_key``); a forged or expired cookie
is simply anonymous. Each cookie carries the user's ``session_version`` as it was when the
session began, and every request checks it against the database (with ``active`` and the
role): signing out, a password or role change and deactivation raise the version, which ends
every session of that user at once. Each session carries a CSRF token that unsafe requests
(POST/PUT/PATCH/DELETE) must echo in ``X-CSRF-Token`` or a ``csrf_token`` form field.
Routes declare who may use them with ``@requires("reviewer")``; admins may use every route.
Sign-in verifies argon2 hashes in a small thread pool (never on the event loop), at the same
cost for unknown accounts, behind a per-account and per-address throttle
(``ivr.web.throttle``); every sign-in, failure and throttled attempt goes to the audit log.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update

from ivr.context import AppContext
from ivr.db.models import AuditLog, User
from ivr.web.bodies import Body, read_model
from ivr.web.context import context_of
from ivr.web.origin import client_address, is_secure
from ivr.web.throttle import LoginThrottle

ROLES = ("agent", "supervisor", "admin", "reviewer")
COOKIE = "dasan_session"
SESSION_SECONDS = 12 * 3600
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
MAX_PASSWORD = 1024
_hasher = PasswordHasher()
# Argon2 takes ~0.1 s of CPU on purpose: two threads at most, so a burst of sign-ins neither
# stalls the event loop nor takes every core (nor the default executor other work uses).
_password_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
THROTTLE_KEY = web.AppKey("login_throttle", LoginThrottle)
# The page a signed-in user gets for a page their role may not open (the console sets it).
FORBIDDEN_PAGE: web.AppKey[Callable[[web.Request], web.StreamResponse]] = web.AppKey("forbidden_page")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the account does not exist or is inactive: the answer then takes as
    # long as for a real account, so the timing does not tell which usernames exist.
    return _hasher.hash(secrets.token_urlsafe(16))


def _check_password(stored: str | None, password: str) -> bool:
    if stored is None:
        verify_password(_dummy_hash(), password)
        return False
    return verify_password(stored, password)


async def check_password(stored: str | None, password: str) -> bool:
    """``verify_password`` in the argon2 thread pool; None (no such account) costs the same."""
    return await asyncio.get_running_loop().run_in_executor(_password_pool, _check_password, stored, password)


@dataclass(frozen=True)
class SessionUser:
    id: int
    username: str
    role: str
    language: str
    csrf: str
    expires: float
    version: int = -1  # users.session_version when the session began


def _sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def encode_session(secret: str, user: SessionUser) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(asdict(user)).encode())
    return payload.decode() + "." + _sign(secret, payload)


def _same(a: str, b: str) -> bool:
    # compare_digest refuses str with non-ASCII characters (TypeError): compare bytes.
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def decode_session(secret: str, cookie: str) -> SessionUser | None:
    payload, _, signature = cookie.partition(".")
    if not _same(_sign(secret, payload.encode("utf-8", "surrogateescape")), signature):
        return None
    try:
        user = SessionUser(**json.loads(base64.urlsafe_b64decode(payload)))
    except (ValueError, TypeError):
        return None
    return user if user.expires > time.time() else None


USER_KEY: web.RequestKey[SessionUser | None] = web.RequestKey("user")


def current_user(request: web.Request) -> SessionUser | None:
    return request.get(USER_KEY)


def _ctx(request: web.Request) -> AppContext:
    return context_of(request)


async def _still_valid(ctx: AppContext, user: SessionUser) -> bool:
    """The account still exists, is active, has the same role and has not ended its sessions."""
    async with ctx.db.session() as session:
        row = (await session.execute(select(User.active, User.role, User.session_version)
                                     .where(User.id == user.id))).one_or_none()
    return row is not None and bool(row[0]) and row[1] == user.role and row[2] == user.version


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = _ctx(request)
    cookie = request.cookies.get(COOKIE)
    user = decode_session(ctx.settings.web.secret_key, cookie) if cookie else None
    if user is not None and not await _still_valid(ctx, user):
        user = None
    request[USER_KEY] = user
    return await handler(request)


async def end_sessions(ctx: AppContext, user_id: int) -> None:
    """Every session of this user ends now (their cookies carry an older session_version)."""
    async with ctx.db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id)
                              .values(session_version=User.session_version + 1))


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


async def _csrf_ok(request: web.Request, user: SessionUser) -> bool:
    if request.method not in UNSAFE:
        return True
    token = request.headers.get("X-CSRF-Token")
    if token is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except (ValueError, HttpProcessingError):  # a malformed body carries no token
            return False
        value = form.get("csrf_token")
        token = value if isinstance(value, str) else None
    return token is not None and _same(token, user.csrf)


async def _refusal(request: web.Request, roles: tuple[str, ...]) -> web.StreamResponse | None:
    """Why ``request`` may not reach a handler guarded for ``roles``: a response to send instead
    (the forbidden page), an HTTP error raised, or None to let it through. A plain function
    rather than the body of ``requires``' closure, so mutation testing reaches the checks."""
    user = current_user(request)
    if user is None:
        if _wants_json(request):
            raise web.HTTPUnauthorized(text='{"error": "sign in first"}', content_type="application/json")
        raise web.HTTPFound("/login?next=" + quote(request.raw_path, safe=""))
    if user.role != "admin" and user.role not in roles:
        page = request.app.get(FORBIDDEN_PAGE)
        if page is not None and not _wants_json(request) and request.method == "GET":
            return page(request)
        raise web.HTTPForbidden(text='{"error": "not allowed for your role"}', content_type="application/json")
    if not await _csrf_ok(request, user):
        raise web.HTTPForbidden(text='{"error": "missing or wrong CSRF token"}', content_type="application/json")
    return None


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Only signed-in users with one of ``roles`` (or admin) get through; CSRF on unsafe methods."""
    for role in roles:
        assert role in ROLES, role

    def decorate(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = await _refusal(request, roles)
            return refused if refused is not None else await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        guarded.roles = roles  # type: ignore[attr-defined]
        return guarded

    return decorate


async def audit(ctx: AppContext, actor: str, action: str, target: str = "", ip: str | None = None,
                **data: Any) -> None:
    async with ctx.db.transaction() as session:
        session.add(AuditLog(actor=actor[:80], action=action, target=target[:200], ip=ip[:64] if ip else ip,
                             data=data))


class Throttled(Exception):
    """Too many failed sign-ins for this account or address: wait ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f} s")
        self.retry_after = max(1, math.ceil(retry_after))


async def sign_in(request: web.Request, username: str, password: str) -> SessionUser | None:
    """The session of ``username`` if the password is right; raises ``Throttled``."""
    ctx = _ctx(request)
    throttle = request.app[THROTTLE_KEY]
    address = client_address(request, ctx.settings)  # behind a proxy: the client's, not the proxy's
    wait = throttle.attempt(username, address)  # counted as a failure until it succeeds
    if wait > 0:
        if throttle.refused(username, address):  # one row per wait, not one per flooded request
            await audit(ctx, username, "sign_in_throttled", ip=address, retry_after=math.ceil(wait))
        raise Throttled(wait)
    async with ctx.db.session() as session:
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
    usable = user is not None and user.active and len(password) <= MAX_PASSWORD
    ok = await check_password(user.password_hash if usable and user is not None else None, password[:MAX_PASSWORD])
    if ok and user is not None:
        throttle.succeeded(username, address)
        await audit(ctx, username, "sign_in", ip=address)
        return SessionUser(user.id, user.username, user.role, user.language, secrets.token_urlsafe(24),
                           time.time() + SESSION_SECONDS, user.session_version)
    reason = "unknown user" if user is None else ("inactive" if not user.active else "wrong password")
    await audit(ctx, username, "sign_in_failed", ip=address, reason=reason)
    return None


def set_session_cookie(request: web.Request, response: web.StreamResponse, user: SessionUser) -> None:
    settings = _ctx(request).settings
    response.set_cookie(COOKIE, encode_session(settings.web.secret_key, user), httponly=True, samesite="Lax",
                        max_age=SESSION_SECONDS, secure=is_secure(request, settings))


class LoginIn(Body):
    username: str
    password: str


async def api_login(request: web.Request) -> web.Response:
    """POST /api/login {"username", "password"} -> the user and the CSRF token; sets the cookie.

    Only ``application/json``: a form or text/plain body is what another site's page can send
    without asking (login CSRF), a JSON body is not."""
    if request.content_type != "application/json":
        return web.json_response({"error": "send the sign-in as application/json"}, status=415)
    body = await read_model(request, LoginIn)
    try:
        user = await sign_in(request, body.username, body.password)
    except Throttled as exc:
        return web.json_response({"error": "too many failed sign-ins; try again later",
                                  "retry_after": exc.retry_after}, status=429,
                                 headers={"Retry-After": str(exc.retry_after)})
    if user is None:
        return web.json_response({"error": "wrong username or password"}, status=401)
    response = web.json_response({"username": user.username, "role": user.role,
                                  "language": user.language, "csrf_token": user.csrf})
    set_session_cookie(request, response, user)
    return response


async def api_logout(request: web.Request) -> web.Response:
    """POST /api/logout (with the CSRF token): ends every session of the signed-in user."""
    user = current_user(request)
    if user is not None:
        if not await _csrf_ok(request, user):
            return web.json_response({"error": "missing or wrong CSRF token"}, status=403)
        await end_sessions(_ctx(request), user.id)
        await audit(_ctx(request), user.username, "sign_out", ip=request.remote)
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE)
    return response


async def api_me(request: web.Request) -> web.Response:
    user = current_user(request)
    if user is None:
        return web.json_response({"error": "sign in first"}, status=401)
    return web.json_response({"username": user.username, "role": user.role,
                              "language": user.language, "csrf_token": user.csrf})


async def create_user(ctx: AppContext, username: str, password: str, role: str,
                      display_name: str = "", language: str = "ko") -> User:
    if role not in ROLES:
        raise ValueError(f"role {role!r} (expected one of {', '.join(ROLES)})")
    password_hash = await asyncio.get_running_loop().run_in_executor(_password_pool, hash_password, password)
    async with ctx.db.transaction() as session:
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
        if user is None:
            user = User(username=username, session_version=0)
            session.add(user)
        else:
            # A password reset or a role change ends the sessions made with the old ones.
            user.session_version = (user.session_version or 0) + 1
        user.password_hash = password_hash
        user.role, user.display_name, user.language = role, display_name or username, language
    return user


async def set_active(ctx: AppContext, username: str, active: bool) -> bool:
    """Enable or disable an account (False: no such user); disabling ends its sessions."""
    async with ctx.db.transaction() as session:
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
        if user is None:
            return False
        user.active = active
        user.session_version = (user.session_version or 0) + 1
    return True


# Characters browsers drop from or treat as "/" in a URL: a path "/\t/host" is "//host" to them.
_IGNORED_IN_URLS = re.compile(r"[\x00-\x20\x7f]")


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (an open redirect otherwise).

    Judged the way a browser reads a Location: percent-escapes decoded (repeatedly), tabs,
    newlines and other control characters dropped, backslashes as slashes; what remains must be
    one "/" followed by a path, never "//host" nor "scheme:"."""
    if not target or len(target) > 2000:
        return None
    decoded = target
    for _ in range(5):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    else:
        return None  # still changing after five rounds: nobody needs that
    seen = _IGNORED_IN_URLS.sub("", decoded).replace("\\", "/")
    try:
        parts = urlsplit(seen)
    except ValueError:  # "//[host" is an unclosed IPv6 host to urlsplit: a host all the same
        return None
    if not seen.startswith("/") or seen.startswith("//") or parts.scheme or parts.netloc:
        return None
    if _IGNORED_IN_URLS.search(target) or "\\" in target:
        return None  # valid after cleaning, but not as sent: refuse rather than rewrite
    return target


async def logout_form(request: web.Request) -> web.Response:
    """POST /logout (form, with the CSRF token): end the session and show the sign-in page."""
    user = current_user(request)
    if user is not None:
        if not await _csrf_ok(request, user):
            raise web.HTTPForbidden(text='{"error": "missing or wrong CSRF token"}', content_type="application/json")
        await end_sessions(_ctx(request), user.id)
        await audit(_ctx(request), user.username, "sign_out", ip=request.remote)
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE)
    raise response


def reissue(request: web.Request, response: web.StreamResponse, **changes: Any) -> SessionUser | None:
    """Replace the session cookie with one carrying ``changes`` (e.g. a new language)."""
    from dataclasses import replace

    user = current_user(request)
    if user is None:
        return None
    updated = replace(user, **changes)
    set_session_cookie(request, response, updated)
    return updated


def setup(app: web.Application, ctx: AppContext) -> None:
    app[THROTTLE_KEY] = LoginThrottle(ctx.settings.web.login_free_failures, ctx.settings.web.login_max_delay_seconds,
                                      clock=lambda: ctx.monotonic())  # read at each call: a test may set it later
    app.middlewares.append(session_middleware)
    app.router.add_post("/api/login", api_login)
    app.router.add_post("/api/logout", api_logout)
    app.router.add_get("/api/me", api_me)
    app.router.add_post("/logout", logout_form)
