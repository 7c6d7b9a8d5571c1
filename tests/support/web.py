"""The whole dasan web application on a real socket (127.0.0.1, a free port) for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from ivr.context import AppContext
from ivr.web.app import create_app


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1:<free port>; yields its base URL (no trailing slash)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve(ctx: AppContext) -> AsyncIterator[str]:
    """``create_app(ctx)`` on 127.0.0.1:<free port>; yields its base URL."""
    async with serve_app(create_app(ctx)) as url:
        yield url
