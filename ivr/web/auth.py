"""Sign-in, sessions, CSRF and roles for every HTTP route that a person uses.

Sessions are signed cookies (HMAC-SHA256 with ``web.secret_key``): nothing to store, and a
forged or expired cookie is simply anonymous. Each session carries a CSRF token that unsafe
requests (POST/PUT/PATCH/DELETE) must echo in ``X-CSRF-Token`` or a ``csrf_token`` form field.
Routes declare who may use them with ``@requires("reviewer")``; admins may use every route.
Every sign-in (and failed attempt) goes to the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from ivr.context import AppContext
from ivr.db.models import AuditLog, User

ROLES = ("agent", "supervisor", "admin", "reviewer")
COOKIE = "dasan_session"
SESSION_SECONDS = 12 * 3600
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_hasher = PasswordHasher()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class SessionUser:
    id: int
    username: str
    role: str
    language: str
    csrf: str
    expires: float


def _sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def encode_session(secret: str, user: SessionUser) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(asdict(user)).encode())
    return payload.decode() + "." + _sign(secret, payload)


def decode_session(secret: str, cookie: str) -> SessionUser | None:
    payload, _, signature = cookie.partition(".")
    if not hmac.compare_digest(_sign(secret, payload.encode()), signature):
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
    from ivr.web.app import CTX_KEY

    return request.app[CTX_KEY]


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cookie = request.cookies.get(COOKIE)
    request[USER_KEY] = decode_session(_ctx(request).settings.web.secret_key, cookie) if cookie else None
    return await handler(request)


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
    return token is not None and hmac.compare_digest(token, user.csrf)


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Only signed-in users with one of ``roles`` (or admin) get through; CSRF on unsafe methods."""
    for role in roles:
        assert role in ROLES, role

    def decorate(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            user = current_user(request)
            if user is None:
                if _wants_json(request):
                    raise web.HTTPUnauthorized(text='{"error": "sign in first"}', content_type="application/json")
                raise web.HTTPFound(f"/login?next={request.path_qs}")
            if user.role != "admin" and user.role not in roles:
                if not _wants_json(request) and request.method == "GET":
                    from ivr.console.render import render

                    return render(request, "forbidden.html", status=403)
                raise web.HTTPForbidden(text='{"error": "not allowed for your role"}', content_type="application/json")
            if not await _csrf_ok(request, user):
                raise web.HTTPForbidden(text='{"error": "missing or wrong CSRF token"}', content_type="application/json")
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        guarded.roles = roles  # type: ignore[attr-defined]
        return guarded

    return decorate


async def audit(ctx: AppContext, actor: str, action: str, target: str = "", ip: str | None = None,
                **data: Any) -> None:
    async with ctx.db.transaction() as session:
        session.add(AuditLog(actor=actor, action=action, target=target, ip=ip, data=data))


async def sign_in(request: web.Request, username: str, password: str) -> SessionUser | None:
    ctx = _ctx(request)
    async with ctx.db.session() as session:
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
    ok = user is not None and user.active and verify_password(user.password_hash, password)
    await audit(ctx, username, "sign_in" if ok else "sign_in_failed", ip=request.remote)
    if not ok or user is None:
        return None
    return SessionUser(user.id, user.username, user.role, user.language, secrets.token_urlsafe(24),
                       time.time() + SESSION_SECONDS)


def set_session_cookie(request: web.Request, response: web.StreamResponse, user: SessionUser) -> None:
    secret = _ctx(request).settings.web.secret_key
    response.set_cookie(COOKIE, encode_session(secret, user), httponly=True, samesite="Lax",
                        max_age=SESSION_SECONDS, secure=request.secure)


async def api_login(request: web.Request) -> web.Response:
    """POST /api/login {"username", "password"} -> the user and the CSRF token; sets the cookie."""
    try:
        body = await request.json()
        username, password = str(body["username"]), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "expected JSON with username and password"}, status=400)
    user = await sign_in(request, username, password)
    if user is None:
        return web.json_response({"error": "wrong username or password"}, status=401)
    response = web.json_response({"username": user.username, "role": user.role,
                                  "language": user.language, "csrf_token": user.csrf})
    set_session_cookie(request, response, user)
    return response


async def api_logout(request: web.Request) -> web.Response:
    user = current_user(request)
    if user is not None:
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
    async with ctx.db.transaction() as session:
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
        if user is None:
            user = User(username=username)
            session.add(user)
        user.password_hash = hash_password(password)
        user.role, user.display_name, user.language = role, display_name or username, language
    return user


def _safe_next(target: str | None) -> str | None:
    # Only paths on this site: "//evil.example" or "http://..." would be an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


async def login_page(request: web.Request) -> web.Response:
    """GET /login: the sign-in form (HTML)."""
    from ivr.console.render import render

    return render(request, "login.html", error=False, next=_safe_next(request.query.get("next")) or "",
                  username="")


async def login_form(request: web.Request) -> web.Response:
    """POST /login (form): sign in, then go to ``next`` or the role's home page."""
    from ivr.console.render import home_of, render

    try:
        form = await request.post()
    except (ValueError, HttpProcessingError):
        form = None
    if form is None:
        raise web.HTTPBadRequest(text="expected the sign-in form")
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    user = await sign_in(request, username, password) if username and password else None
    if user is None:
        return render(request, "login.html", status=401, error=True, next=target or "", username=username)
    response = web.HTTPFound(target or home_of(user))
    set_session_cookie(request, response, user)
    raise response


async def logout_form(request: web.Request) -> web.Response:
    """POST /logout (form, with the CSRF token): end the session and show the sign-in page."""
    user = current_user(request)
    if user is not None:
        if not await _csrf_ok(request, user):
            raise web.HTTPForbidden(text='{"error": "missing or wrong CSRF token"}', content_type="application/json")
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
    app.middlewares.append(session_middleware)
    app.router.add_post("/api/login", api_login)
    app.router.add_post("/api/logout", api_logout)
    app.router.add_get("/api/me", api_me)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_form)
    app.router.add_post("/logout", logout_form)
