"""Registers the console: pages, their JSON endpoints, WebSockets and static files."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from sqlalchemy import update

from ivr.console import (
    admin,
    agent,
    knowledge,
    login,
    phone_status,
    quality,
    reports,
    reviewer,
    supervise,
    wallboard,
)
from ivr.console.http import audit_request, username
from ivr.console.i18n import LANGUAGES
from ivr.console.openapi import PATHS
from ivr.console.render import HERE, LANG_COOKIE, ctx_of, home_of
from ivr.context import AppContext
from ivr.db.models import User
from ivr.web.auth import FORBIDDEN_PAGE, current_user, reissue, requires
from ivr.web.bodies import Body, one_of, read_model
from ivr.web.openapi import add_paths


async def home(request: web.Request) -> web.Response:
    """GET /: the signed-in user's own page, or the sign-in page."""
    user = current_user(request)
    raise web.HTTPFound(home_of(user) if user else "/login")


class LanguageIn(Body):
    language: Annotated[str, one_of(LANGUAGES)]


@requires("agent", "supervisor", "reviewer")
async def set_language(request: web.Request) -> web.Response:
    """POST /api/console/language {"language": "ko"|"en"}: kept on the user and in the session."""
    language = (await read_model(request, LanguageIn)).language
    async with ctx_of(request).db.transaction() as session:
        await session.execute(update(User).where(User.username == username(request)).values(language=language))
    response = web.json_response({"language": language})
    reissue(request, response, language=language)
    response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, samesite="Lax")
    await audit_request(request, "language_changed", language=language)
    return response


def setup(app: web.Application, ctx: AppContext) -> None:
    app[FORBIDDEN_PAGE] = login.forbidden_page
    login.setup(app)
    app.router.add_get("/", home)
    app.router.add_post("/api/console/language", set_language)
    app.router.add_static("/static/console", HERE / "static")
    add_paths(app, PATHS)
    agent.setup(app)
    knowledge.setup(app)
    reports.setup(app)
    quality.setup(app)
    admin.setup(app)
    reviewer.setup(app)
    wallboard.setup(app)
    supervise.setup(app)
    phone_status.setup(app, ctx)
