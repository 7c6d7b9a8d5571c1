"""``dasan up``: every service in one process on the configured (default: embedded) back-ends."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

from ivr import services
from ivr.config import Settings
from ivr.context import AppContext

log = logging.getLogger("dasan.up")
GC_THRESHOLDS = (100_000, 20, 20)  # young-generation allocations, then collections per older one


async def _first_admin(ctx: AppContext) -> str | None:
    """On an empty database, create an admin account so the console can be opened at all."""
    import secrets

    from sqlalchemy import func, select

    from ivr.db.models import User
    from ivr.web.auth import create_user

    async with ctx.db.session() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return None
    password = secrets.token_urlsafe(9)
    await create_user(ctx, "admin", password, "admin", display_name="Administrator")
    return password


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the servers run on: uvloop (libuv, in Cython; a FastAGI command costs
    about a third less CPU than on asyncio's own loop, see docs/benchmarks.md) when configured
    and installed, else asyncio's own (None)."""
    if kind != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("event_loop: uvloop is not installed; running on asyncio's own loop")
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


async def run(settings: Settings, only: list[str] | None = None, ready: asyncio.Event | None = None) -> None:
    ctx = await AppContext.create(settings)
    started: list[services.Service] = []
    addresses_by_service: list[tuple[str, str]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    try:
        print(f"dasan: database {settings.database_url.split('@')[-1]}", flush=True)
        print(f"dasan: bus {settings.bus.backend}", flush=True)
        print(f"dasan: event loop {loop_name()}", flush=True)
        for name in only or list(services.REGISTRY):
            service = services.build(name, ctx)
            addresses = await service.start()
            started.append(service)
            for address in addresses:
                print(f"dasan: {name:<10} {address}", flush=True)
                addresses_by_service.append((name, address))
        web = next((a for name, a in addresses_by_service if name == "web"), None)
        if web:
            base = web.rstrip("/")
            for label, path in (("console", "/login"), ("wallboard", "/console/wallboard"),
                                ("citizen chat", "/chat"), ("Open311", "/open311/v2/discovery.json"),
                                ("API description", "/openapi.json")):
                print(f"dasan: {label:<16} {base}{path}", flush=True)
        password = await _first_admin(ctx)
        if password:
            print(f"dasan: first run: console user 'admin', password '{password}' "
                  "(change it: dasan user add --username admin --role admin --password ...)", flush=True)
        # Everything loaded so far (modules, models, compiled statements) lives as long as the
        # process: keep it out of the collector's scans, so a full collection under load is short.
        gc.freeze()
        # Under load a thousand calls' state is young and alive: with the default thresholds the
        # collector walks it every 700 allocations, pausing every call a few ms each time.
        gc.set_threshold(*GC_THRESHOLDS)
        print("dasan: ready (Ctrl-C stops)", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        print("dasan: stopping", flush=True)
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
        await ctx.close()
        print("dasan: stopped", flush=True)
