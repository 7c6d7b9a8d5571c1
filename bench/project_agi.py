"""The project's FastAGI service on its own, for when ``agi`` is not (yet) in ivr.services.REGISTRY.

Builds the same ``AppContext`` and ``ivr.agi.server.AgiService`` that ``dasan up --only agi``
builds, from the same configuration (environment ``DASAN__...``), and prints ``port=<n>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from bench.agi_load import raise_fd_limit
from ivr import datafolder
from ivr.config import load_settings
from ivr.context import AppContext


async def main() -> None:
    from ivr.agi.server import AgiService

    settings = load_settings()
    datafolder.seed(settings)  # menus and queues in the data folder, as `dasan` lays them out
    ctx = await AppContext.create(settings)
    service = AgiService(ctx)
    addresses = await service.start()
    print(f"dasan agi {addresses[0]} port={addresses[0].rsplit(':', 1)[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()
    await ctx.close()


if __name__ == "__main__":
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
