"""One aiohttp application for every HTTP surface; features plug in through ``SETUPS``."""

from __future__ import annotations

import importlib

from aiohttp import web

from ivr.context import AppContext
from ivr.web.context import CTX_KEY

# "module:function" called as function(app, ctx) to add routes, middlewares and background tasks.
SETUPS: list[str] = [
    "ivr.web.auth:setup",
    "ivr.web.openapi:setup",
    "ivr.recordings.api:setup",
    "ivr.open311.api:setup",
    "ivr.web.errors:setup",
    "ivr.web.limits:setup",
    "ivr.messaging.api:setup",
    "ivr.webrtc.api:setup",
    "ivr.console.pages:setup",
    "ivr.web.metrics:setup",
]


async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    async with ctx.db.session() as session:
        from sqlalchemy import text

        await session.execute(text("SELECT 1"))
    return web.json_response({"status": "ok"})  # no versions: they only help an attacker pick exploits


async def _common_headers(_request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp would announce "Python/3.x aiohttp/3.y"; and no response may be sniffed into
    # another type (an uploaded "image" that is also HTML must never render as a page).
    response.headers["Server"] = "dasan"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def _session_key(ctx: AppContext) -> None:
    """Sessions are never signed with a known key: a configured one must be strong; none at
    all (an app made without ``dasan up``, e.g. in tests) gets a random key for this process
    only. ``dasan up`` keeps one in <data_dir>/secrets.yaml (ivr.site_secrets)."""
    import logging
    import secrets

    from ivr.site_secrets import SecretError, weakness

    web_settings = ctx.settings.web
    if not web_settings.secret_key:
        logging.getLogger("dasan.web").warning("web.secret_key is not set: sessions use a random key of "
                                               "this process (they end with it)")
        web_settings.secret_key = secrets.token_urlsafe(32)
    why = weakness(web_settings.secret_key, 32)
    if why:
        raise SecretError([f"web.secret_key {why}: remove it to have one generated, or set a random value"])


def create_app(ctx: AppContext) -> web.Application:
    _session_key(ctx)
    app = web.Application(client_max_size=ctx.settings.web.max_body_bytes)
    app[CTX_KEY] = ctx
    app.on_response_prepare.append(_common_headers)
    app.router.add_get("/healthz", healthz)
    for spec in SETUPS:
        module_name, _, attr = spec.partition(":")
        getattr(importlib.import_module(module_name), attr)(app, ctx)
    return app


class WebService:
    name = "web"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.runner: web.AppRunner | None = None

    async def start(self) -> list[str]:
        self.runner = web.AppRunner(create_app(self.ctx), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.ctx.settings.web.host, self.ctx.settings.web.port)
        await site.start()
        return [f"http://{h}:{p}/" for h, p in _addresses(self.runner)]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _addresses(runner: web.AppRunner) -> list[tuple[str, int]]:
    out = []
    for address in runner.addresses:
        host, port = address[0], address[1]
        out.append((f"[{host}]" if ":" in host else host, port))
    return out
