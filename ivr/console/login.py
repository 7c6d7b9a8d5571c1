"""The sign-in page (GET and POST /login): the console's HTML face of ``ivr.web.auth``."""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ivr.console.render import home_of, render
from ivr.web.auth import Throttled, safe_next, set_session_cookie, sign_in


async def login_page(request: web.Request) -> web.Response:
    """GET /login: the sign-in form (HTML)."""
    return render(request, "login.html", error="", next=safe_next(request.query.get("next")) or "",
                  username="")


async def login_form(request: web.Request) -> web.Response:
    """POST /login (form): sign in, then go to ``next`` or the role's home page."""
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError):
        form = None
    if form is None:
        raise web.HTTPBadRequest(text="expected the sign-in form")
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    try:
        user = await sign_in(request, username, password) if username and password else None
    except Throttled as exc:
        response = render(request, "login.html", status=429, error="login_throttled", next=target or "",
                          username=username)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return render(request, "login.html", status=401, error="wrong_login", next=target or "", username=username)
    response = web.HTTPFound(target or home_of(user))
    set_session_cookie(request, response, user)
    raise response


def forbidden_page(request: web.Request) -> web.StreamResponse:
    """What a signed-in user whose role may not open a page sees instead of it."""
    return render(request, "forbidden.html", status=403)


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_form)
