"""Server-rendered pages: one Jinja2 environment, the signed-in user and their language."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ivr.config import Settings
from ivr.console.i18n import LANGUAGES, catalogue, translator
from ivr.context import AppContext
from ivr.languages import Languages, load_languages
from ivr.web.auth import SessionUser, current_user
from ivr.web.context import context_of

HERE = Path(__file__).resolve().parent
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
LANG_COOKIE = "dasan_lang"

# Which pages each role sees in the navigation (admin sees everything).
NAV = (
    ("nav_agent", "/console/agent", ("agent", "supervisor")),
    ("nav_wallboard", "/console/wallboard", ("agent", "supervisor", "reviewer")),
    ("nav_reviewer", "/console/reviewer", ("reviewer", "supervisor")),
    ("nav_quality", "/console/quality", ("agent", "supervisor", "reviewer")),
    ("nav_knowledge", "/console/knowledge", ("supervisor",)),
    ("nav_reports", "/console/reports", ("supervisor",)),
    ("nav_admin", "/console/admin", ("supervisor",)),
)


def ctx_of(request: web.Request) -> AppContext:
    return context_of(request)


def caller_languages(request: web.Request) -> Languages:
    """The site's caller-language registry (beside its menus): the console's names for them."""
    return load_languages(ctx_of(request).settings.agi.menus_dir)


def language_of(request: web.Request) -> str:
    user = current_user(request)
    if user is not None and user.language in LANGUAGES:
        return user.language
    chosen = request.query.get("lang") or request.cookies.get(LANG_COOKIE) or ""
    if chosen in LANGUAGES:
        return chosen
    accept = request.headers.get("Accept-Language", "")
    return "en" if accept.lower().startswith("en") else "ko"


def allowed(user: SessionUser | None, roles: tuple[str, ...]) -> bool:
    return user is not None and (user.role == "admin" or user.role in roles)


def home_of(user: SessionUser) -> str:
    for _key, href, roles in NAV:
        if allowed(user, roles):
            return href
    return "/login"


def site_name(settings: Settings, language: str) -> str:
    """The configured name in the reader's language (``site_names``), else ``site_name``."""
    return settings.site_names.get(language) or settings.site_name


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    language = language_of(request)
    user = current_user(request)
    nav = [(key, href) for key, href, roles in NAV if allowed(user, roles)]
    html = ENV.get_template(template).render(
        t=translator(language), lang=language, user=user, nav=nav, path=request.path,
        texts_json=json.dumps(catalogue(language) | caller_languages(request).labels(language), ensure_ascii=False),
        site=site_name(ctx_of(request).settings, language), **values,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                 "media-src 'self' blob:; connect-src 'self' ws: wss:; "
                                 "style-src 'self'; script-src 'self'; frame-ancestors 'none'"})
