"""GET /api/console/admin/webrtc: the browser-call settings as the admin console edits them
(never a TURN secret: only whether one is set) and which agents can take video calls (the
video queue's skill) and have the console softphone; POST edits them (ivr.webrtc.admin_edit)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ivr.console.render import ctx_of
from ivr.queues import load_queues
from ivr.web.auth import requires
from ivr.web.openapi import add_paths
from ivr.webrtc import admin_edit, site_settings
from ivr.webrtc.asterisk_view import ws_url


@requires("supervisor")
async def webrtc_settings(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    settings = ctx.settings
    site_settings.overlay(settings)  # an edit saved by another web process or node
    w = settings.webrtc
    q = load_queues(settings.queues_dir)
    video_queues = {name for name, queue in q.queues.items() if queue.media == "video"}
    agents = [{"username": a.username, "name": a.name, "extension": a.extension,
               "video": sorted(video_queues & set(a.skills)), "softphone": a.username in w.softphone_agents,
               "takes_video": w.video_queue in a.skills}
              for a in q.agents]
    return web.json_response({
        "enabled": w.enabled, "ws_url": ws_url(w), "http": f"{w.http_bind}:{w.http_port}",
        "tls": w.tls, "tls_cert_file": str(w.tls_cert_file or ""), "tls_private_key": str(w.tls_private_key or ""),
        "stun_server": w.stun_server, "turn_server": w.turn_server,
        "turn_credentials": "shared secret" if w.turn_secret else ("static" if w.turn_username else ""),
        "video_queue": w.video_queue, "video_slots": w.video_slots, "voice_slots": w.voice_slots,
        "credential_ttl_seconds": w.credential_ttl_seconds, "mint_per_minute": w.mint_per_minute,
        "agents": agents,
        # what the edit form starts from
        "edit": {**admin_edit.form_values(w),
                 "turn_secret_set": bool(w.turn_secret), "turn_password_set": bool(w.turn_password),
                 "video_agents": admin_edit.video_agents(w.video_queue, q)},
        "version": admin_edit.version_of(ctx),
    })


def _op(summary: str, op_id: str, body: dict[str, Any] | None = None, **extra: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                                 "401": {"description": "sign in first"},
                                 "403": {"description": "role not allowed (allowed: supervisor, admin) or CSRF token missing"}}
    responses.update({status: {"description": text} for status, text in extra.items()})
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "tags": ["console"],
                          "security": [{"session": []}], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


PATHS: dict[str, Any] = {"/api/console/admin/webrtc": {
    "get": _op("The browser-call settings (no TURN secret: only whether one is set) and who takes video",
               "getWebrtcSettings"),
    "post": _op("Edit the browser-call settings: validate, save in the data folder, record, apply to Asterisk",
                "saveWebrtcSettings", admin_edit.WebrtcEdit.model_json_schema(),
                **{"400": "a field does not match the schema", "409": "changed since opened",
                   "422": "the settings together cannot be rendered or are inconsistent"}),
}}


def setup(app: web.Application) -> None:
    app.router.add_get("/api/console/admin/webrtc", webrtc_settings)
    app.router.add_post("/api/console/admin/webrtc", admin_edit.save_webrtc)
    add_paths(app, PATHS)
