"""GET /api/console/admin/webrtc: what an administrator checks before opening browser calls:
the WebRTC settings as rendered (no secrets) and which agents can take video calls (the
video queue's skill) and whether each has the console softphone."""

from __future__ import annotations

from aiohttp import web

from ivr.console.render import ctx_of
from ivr.queues import load_queues
from ivr.web.auth import requires
from ivr.webrtc.asterisk_view import ws_url


@requires("supervisor")
async def webrtc_settings(request: web.Request) -> web.Response:
    settings = ctx_of(request).settings
    w = settings.webrtc
    q = load_queues(settings.queues_dir)
    video_queues = {name for name, queue in q.queues.items() if queue.media == "video"}
    agents = [{"username": a.username, "name": a.name, "extension": a.extension,
               "video": sorted(video_queues & set(a.skills)), "softphone": a.username in w.softphone_agents}
              for a in q.agents]
    return web.json_response({
        "enabled": w.enabled, "ws_url": ws_url(w), "http": f"{w.http_bind}:{w.http_port}",
        "tls": w.tls, "tls_cert_file": str(w.tls_cert_file or ""), "tls_private_key": str(w.tls_private_key or ""),
        "stun_server": w.stun_server, "turn_server": w.turn_server,
        "turn_credentials": "shared secret" if w.turn_secret else ("static" if w.turn_username else ""),
        "video_queue": w.video_queue, "video_slots": w.video_slots, "voice_slots": w.voice_slots,
        "credential_ttl_seconds": w.credential_ttl_seconds, "mint_per_minute": w.mint_per_minute,
        "agents": agents,
    })


def setup(app: web.Application) -> None:
    app.router.add_get("/api/console/admin/webrtc", webrtc_settings)
