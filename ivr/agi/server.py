"""FastAGI server on asyncio: thousands of concurrent calls in one process.

Each connection is one task: read the environment (under a deadline; a socket closed before
its blank line ends the task at once, unlike panoramisk which spins), pick the route from
``agi_network_script`` (``agi://host/main`` -> ``main``), run the route's handler with an
``AgiChannel``. A failing or silent call ends alone; the others go on. ``stop`` stops
accepting, waits for the calls in progress (``drain_timeout``), then cuts the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ivr.agi.channel import AgiChannel
from ivr.agi.protocol import AgiError, AgiStream, Watchdog
from ivr.agi.wire import agi_arg
from ivr.context import AppContext
from ivr.engine.channel import ChannelHangup
from ivr.observe import AGI_SESSIONS

log = logging.getLogger("dasan.agi")

# A route gets the call's channel (an AgiChannel: ``ch.stream`` reaches the raw protocol).
Handler = Callable[[Any], Awaitable[None]]


class FastAgiServer:
    def __init__(
        self,
        routes: dict[str, Handler],
        host: str = "127.0.0.1",
        port: int = 4573,
        env_timeout: float = 5.0,
        command_timeout: float = 30.0,
        drain_timeout: float = 30.0,
    ) -> None:
        self.routes = routes
        self.host, self.port = host, port
        self.env_timeout = env_timeout
        self.command_timeout = command_timeout
        self.drain_timeout = drain_timeout
        self.server: asyncio.Server | None = None
        self.calls: set[asyncio.Task[None]] = set()
        self.served = 0
        self.failed = 0  # calls that ended on a protocol error or an exception in a handler
        # Deadlines are checked a few times per timeout (a call may overrun by up to a tick).
        self.watchdog = Watchdog(min(0.5, max(0.01, min(env_timeout, command_timeout) / 10)))

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._connection, self.host, self.port, backlog=4096)
        self.watchdog.start()
        return [(s.getsockname()[0], s.getsockname()[1]) for s in self.server.sockets]

    def _connection(self) -> AgiStream:
        stream = AgiStream(self.command_timeout)
        task = asyncio.get_running_loop().create_task(self._serve(stream))
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)
        return stream

    async def _serve(self, stream: AgiStream) -> None:
        self.watchdog.streams.add(stream)
        try:
            env = await stream.read_env(self.env_timeout)
            AGI_SESSIONS.inc()
            script = env.get("agi_network_script", "").split("?", 1)[0].strip("/")
            handler = self.routes.get(script)
            if handler is None:
                log.warning("no AGI route %r (request %s)", script, env.get("agi_request"))
                with contextlib.suppress(AgiError):
                    await stream.command(f"VERBOSE {agi_arg(f'dasan: no AGI route {script}')} 1")
                return
            self.served += 1
            await handler(AgiChannel(stream))
        except (AgiError, ChannelHangup) as exc:
            # early disconnect, silence, garbage: this call ends, the others go on
            self.failed += 1
            log.info("AGI call ended: %s", exc)
        except Exception:
            self.failed += 1
            log.exception("AGI handler failed")
        finally:
            self.watchdog.streams.discard(stream)
            await stream.close()

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()  # no new calls
        if self.calls:
            log.info("draining %d AGI calls", len(self.calls))
            _done, pending = await asyncio.wait(set(self.calls), timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        # after the drain: wait_closed waits until every connection is gone (as on Python 3.11.7),
        # so waiting first would wait for calls in progress with no drain_timeout at all
        await self.server.wait_closed()
        await self.watchdog.stop()
        self.server = None


class AgiService:
    """``dasan up`` service "agi": the FastAGI server with the IVR routes (main, survey, callback)."""

    name = "agi"

    def __init__(self, ctx: AppContext) -> None:
        from ivr.engine.runtime import IvrRuntime

        self.ctx = ctx
        self.runtime = IvrRuntime.from_settings(ctx)
        agi = ctx.settings.agi
        self.server = FastAgiServer(
            self.runtime.routes(), agi.host, agi.port, agi.env_timeout, agi.command_timeout, agi.drain_timeout
        )

    async def start(self) -> list[str]:
        addresses = await self.server.start()
        return [f"agi://{f'[{h}]' if ':' in h else h}:{p}" for h, p in addresses]

    async def stop(self) -> None:
        await self.server.stop()
        await self.runtime.engine.writer.flush()  # path steps of calls that just ended
