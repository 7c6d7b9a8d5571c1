"""``dasan up``: every service in one process on the configured (default: embedded) back-ends."""

from __future__ import annotations

import asyncio
import logging
import signal

from ivr import services
from ivr.config import Settings
from ivr.context import AppContext

log = logging.getLogger("dasan.up")


async def run(settings: Settings, only: list[str] | None = None, ready: asyncio.Event | None = None) -> None:
    ctx = await AppContext.create(settings)
    started: list[services.Service] = []
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
        for name in only or list(services.REGISTRY):
            service = services.build(name, ctx)
            addresses = await service.start()
            started.append(service)
            for address in addresses:
                print(f"dasan: {name:<10} {address}", flush=True)
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
