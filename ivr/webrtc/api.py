"""HTTP side of browser calls: the citizens' /call page (a PWA), its credentials, and the
agents' softphone settings. JsSIP is served from node_modules (``make jssip``), never a CDN."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import jinja2
from aiohttp import web
from sqlalchemy import select

from ivr.config import Settings
from ivr.console.http import username
from ivr.console.render import ctx_of
from ivr.context import AppContext
from ivr.languages import Languages, load_languages
from ivr.queues import QueueConfig, load_queues
from ivr.site_secrets import sip_password
from ivr.web.auth import audit, requires
from ivr.web.bodies import Body, read_model
from ivr.web.errors import json_error
from ivr.webrtc import admin_view, report, survey, video_recording
from ivr.webrtc.asterisk_push import PushError, push_credential
from ivr.webrtc.asterisk_view import ws_url
from ivr.webrtc.credentials import CredentialRefused, refusal_logged
from ivr.webrtc.ice import ice_servers
from ivr.webrtc.state import STATE_KEY, WebcallState, webcall_state

log = logging.getLogger("dasan.webrtc")

HERE = Path(__file__).resolve().parent
JSSIP_FILE = HERE / "static" / "vendor" / "jssip.min.js"  # `make jssip` (package data; not in git)
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; "
       "style-src 'self'; script-src 'self'; frame-ancestors 'none'; manifest-src 'self'; worker-src 'self'")
STATUS_CODES = {"invalid": 403, "expired": 403, "replayed": 409, "rate_limited": 429, "busy": 503}


def page_registry(request: web.Request) -> Languages:
    """The site's language registry: the page's languages and texts (``page`` entries)."""
    return load_languages(webcall_state(request).settings.agi.menus_dir)


def page_language(request: web.Request, registry: Languages) -> str:
    """?lang=, else the browser's first language if the page speaks it, else the first language."""
    offered = registry.page_languages
    chosen = request.query.get("lang", "")
    if chosen in offered:
        return chosen
    accept = request.headers.get("Accept-Language", "").lower()
    for lang in offered:
        if accept.startswith(lang):
            return lang
    return registry.codes[0]


async def call_page(request: web.Request) -> web.Response:
    """GET /call: the citizens' entry (sign-language video, voice, chat, report, tracking)."""
    state = webcall_state(request)
    registry = page_registry(request)
    lang = page_language(request, registry)
    texts = registry.page_texts(lang)
    languages = {code: registry.languages[code].name for code in registry.page_languages}
    html = ENV.get_template("call.html").render(
        lang=lang, t=texts, texts_json=json.dumps(texts, ensure_ascii=False), languages=languages,
        site=state.settings.site_name, token=state.tokens.issue(), enabled=state.settings.webrtc.enabled)
    return web.Response(text=html, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP,
                                 "Permissions-Policy": "camera=(self), microphone=(self)"})


async def manifest(request: web.Request) -> web.Response:
    registry = page_registry(request)
    lang = page_language(request, registry)
    texts = registry.page_texts(lang)
    body = {"name": texts["app_name"], "short_name": "120", "lang": lang, "start_url": f"/call?lang={lang}",
            "scope": "/call", "display": "standalone", "background_color": "#ffffff", "theme_color": "#0b5cad",
            "icons": [{"src": "/static/webcall/icon.svg", "sizes": "any", "type": "image/svg+xml"}]}
    return web.json_response(body, content_type="application/manifest+json")


async def service_worker(_request: web.Request) -> web.FileResponse:
    # Served under /call so its scope covers the page (a worker's scope is its own folder).
    return web.FileResponse(HERE / "static" / "sw.js", headers={
        "Content-Type": "text/javascript", "Service-Worker-Allowed": "/call", "Cache-Control": "no-cache"})


def _queues(settings: Settings) -> QueueConfig:
    return load_queues(settings.queues_dir)


def voice_target(q: QueueConfig, lang: str) -> str:
    """Where a browser voice call goes: a foreign-language page calls its language line
    straight (dasan-web-voice has an extension per audio queue) while the line is open;
    otherwise the IVR, which knows the hours and night routes."""
    queue = q.queues.get(lang)
    if lang != "ko" and queue is not None and queue.media == "audio" and q.is_open(lang):
        return lang
    return "ivr"


async def status(request: web.Request) -> web.Response:
    """GET /api/webcall/status: whether each kind of call can be made now (hours, agents ready)."""
    from ivr.ami.models import AgentState

    state = webcall_state(request)
    w = state.settings.webrtc
    q = _queues(state.settings)
    video_queue = w.video_queue if w.video_queue in q.queues else None
    ready = staffed = 0
    if video_queue is not None:
        async with ctx_of(request).db.session() as session:
            rows = (await session.execute(select(AgentState))).scalars().all()
        members = [r for r in rows if video_queue in (r.queues or {}) and r.state != "logged_out"]
        # Busy members still count: the caller waits in the queue for the next one.
        staffed, ready = len(members), sum(1 for r in members if r.state == "available")
    return web.json_response({
        "enabled": w.enabled,
        "video": {"open": bool(video_queue and q.is_open(video_queue)), "agents_logged_in": staffed,
                  "agents_ready": ready},
        "voice": {"open": True},
    })


class MintIn(Body):
    kind: Literal["video", "voice"]
    token: str = ""  # the page's one-use token
    lang: str = ""  # the caller's language, for a voice call's queue


async def mint(request: web.Request) -> web.Response:
    """POST /api/webcall/credentials {"kind": "video"|"voice", "token"}: one call's SIP credential."""
    state = webcall_state(request)
    w = state.settings.webrtc
    if not w.enabled:
        raise json_error(404, "calls from the browser are not enabled on this site")
    body = await read_model(request, MintIn)
    kind = body.kind
    address = request.remote or "?"
    try:
        await state.tokens.redeem(body.token)
        credential = await state.issuer.mint(kind, address)
    except CredentialRefused as exc:
        refusal_logged(exc.reason, address, str(exc))
        await audit(ctx_of(request), "citizen", "webcall_refused", f"address:{address}", ip=address, reason=exc.reason)
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
        return web.json_response({"error": str(exc), "reason": exc.reason, "token": state.tokens.issue()},
                                 status=STATUS_CODES.get(exc.reason, 403), headers=headers)
    try:
        await push_credential(state.settings, credential)
    except PushError as exc:
        await state.issuer.release(credential)
        log.error("webcall: could not set %s in Asterisk: %s", credential.username, exc)
        return web.json_response({"error": "the call service is unavailable; use chat or try later",
                                  "reason": "unavailable", "token": state.tokens.issue()}, status=503)
    target = w.video_queue if kind == "video" else voice_target(_queues(state.settings), body.lang)
    log.info("webcall %s credential %s for %s until %d", kind, credential.username, address, credential.expires_at)
    return web.json_response({
        "kind": kind, "ws_url": ws_url(w), "uri": f"sip:{credential.username}@{w.sip_domain}",
        "username": credential.username, "password": credential.password,
        "target": f"sip:{target}@{w.sip_domain}", "expires_at": int(credential.expires_at),
        "ice_servers": ice_servers(w, credential.username), "token": state.tokens.issue(),
    }, headers={"Cache-Control": "no-store"})


@requires("agent", "supervisor")
async def softphone(request: web.Request) -> web.Response:
    """GET /api/console/softphone: my endpoint's WebRTC settings, when I have a softphone."""
    state = webcall_state(request)
    w = state.settings.webrtc
    me = username(request)
    agent = next((a for a in _queues(state.settings).agents if a.username == me), None)
    if not w.enabled or agent is None or me not in w.softphone_agents:
        return web.json_response({"enabled": False})
    return web.json_response({
        "enabled": True, "ws_url": ws_url(w), "uri": f"sip:{agent.extension}@{w.sip_domain}",
        "username": agent.extension, "password": sip_password(state.settings, agent),
        "ice_servers": ice_servers(w, agent.extension),
        "queues": sorted(q for q in _queues(state.settings).queues),
    }, headers={"Cache-Control": "no-store"})


async def jssip(_request: web.Request) -> web.StreamResponse:
    if not JSSIP_FILE.exists():
        raise web.HTTPNotFound(text="JsSIP is not installed: run `make jssip` (npm ci)")
    return web.FileResponse(JSSIP_FILE, headers={"Content-Type": "text/javascript", "Cache-Control": "max-age=86400"})


def setup(app: web.Application, ctx: AppContext) -> None:
    app[STATE_KEY] = WebcallState(ctx.settings, ctx.db)
    r = app.router
    r.add_get("/call", call_page)
    r.add_get("/call/manifest.webmanifest", manifest)
    r.add_get("/call/sw.js", service_worker)
    r.add_get("/api/webcall/status", status)
    r.add_post("/api/webcall/credentials", mint)
    r.add_post("/api/webcall/report", report.report)
    r.add_post("/api/webcall/survey", survey.survey)
    r.add_get("/api/console/softphone", softphone)
    r.add_get("/static/vendor/jssip.min.js", jssip)
    r.add_static("/static/webcall", HERE / "static")
    video_recording.setup(app)
    admin_view.setup(app)


__all__ = ["setup"]
