"""A FastAGI server with the real IVR on an ephemeral port, and scripted callers against it.

Everything goes over real TCP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ivr.agi.caller import CallLog, ScriptedCaller
from ivr.agi.server import FastAgiServer
from ivr.bus import Bus
from ivr.config import Settings
from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES
from ivr.db import Database
from ivr.engine.channel import Channel
from ivr.engine.engine import Call, IvrEngine
from ivr.engine.runtime import IvrRuntime, load_checked

# The shipped defaults (read only: the harness never writes them).
MENUS_DIR = DEFAULT_MENUS
QUEUES_DIR = DEFAULT_QUEUES


@dataclass
class IvrHarness:
    db: Database
    bus: Bus
    menus_dir: Path = MENUS_DIR
    queues_dir: Path = QUEUES_DIR
    now: datetime | None = None  # pinned local time for opening hours (None: the real clock)
    command_timeout: float = 10.0
    env_timeout: float = 5.0
    drain_timeout: float = 10.0
    calls: list[Call] = field(default_factory=list)
    server: FastAgiServer | None = None
    host: str = "127.0.0.1"
    port: int = 0
    settings: Settings | None = None  # the site's, for lookups (None: the embedded defaults)

    async def start(self) -> IvrHarness:
        menus, queues = load_checked(self.menus_dir, self.queues_dir)
        self.engine = IvrEngine(menus, queues, self.db, self.bus, clock=lambda: self.now,
                                 settings=self.settings)
        routes = IvrRuntime(self.engine).routes()

        async def main(ch: Channel) -> None:
            self.calls.append(await self.engine.main(ch))

        routes["main"] = main
        self.server = FastAgiServer(routes, "127.0.0.1", 0, env_timeout=self.env_timeout,
                                    command_timeout=self.command_timeout, drain_timeout=self.drain_timeout)
        (self.host, self.port), *_ = await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    async def dial(self, script: str = "", **kwargs: Any) -> CallLog:
        return await ScriptedCaller(script, **kwargs).call(self.host, self.port)

    def call_for(self, log: CallLog) -> Call:
        """The engine's view of the call a caller made (matched by the call's Linkedid)."""
        call_id = log.variables.get("CHANNEL(linkedid)")
        for call in self.calls:
            if call.call_id == call_id:
                return call
        raise LookupError(f"no call with Linkedid {call_id}")

