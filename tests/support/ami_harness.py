"""A bridge wired to an ``AmiPeer`` on real sockets and a real database (tests, benchmarks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from ivr.ami.protocol import load_dialog, unsolicited_chunks
from ivr.ami.service import AmiBridge
from ivr.bus import Bus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from tests.support.ami_peer import AmiPeer
from tests.support.data import CAPTURES


def capture_chunks(scenario: str, root: Path = CAPTURES) -> list[bytes]:
    """The events Asterisk sent in a captured scenario, in its original TCP chunks."""
    return unsolicited_chunks(load_dialog(root / scenario / "ami.dialog.log"))


def index_of(chunks: list[bytes], needle: str) -> int:
    for i, chunk in enumerate(chunks):
        if needle.encode() in chunk:
            return i
    raise ValueError(f"{needle!r} not in the capture")


@dataclass
class Rig:
    peer: AmiPeer
    bridge: AmiBridge
    ctx: AppContext

    async def settle(self) -> None:
        """Wait until everything the peer sent has been committed. The peer answers a Ping
        after the events it wrote before it, on the same socket: once the answer is here they
        have all been read, and the bridge is idle once it has committed them."""
        if self.bridge.conn.logged_in.is_set():
            await self.bridge.conn.send({"Action": "Ping"}, timeout=30)
        assert await self.bridge.wait_idle(60), "bridge did not catch up"

    async def restart_bridge(self) -> None:
        await self.bridge.stop()
        logins = self.peer.logins
        self.bridge = AmiBridge(self.ctx, metrics_interval=0.05, callbacks=self.bridge.dialer is not None)
        await self.bridge.start()
        await self.peer.wait_login(logins + 1)
        await wait_for(lambda: self.bridge.resyncs >= 1)


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def rig(settings: Settings, db_url: str, bus: Bus, callbacks: bool = False) -> AsyncIterator[Rig]:
    peer = AmiPeer(settings.ami.username, settings.ami.secret)
    settings.ami.port = await peer.start()
    settings.ami.enabled = True
    settings.database.url = db_url
    ctx = AppContext(settings, Database(db_url), bus)
    bridge = AmiBridge(ctx, metrics_interval=0.05, callbacks=callbacks)
    await bridge.start()
    r = Rig(peer, bridge, ctx)
    try:
        await peer.wait_login(1)
        await wait_for(lambda: r.bridge.resyncs >= 1)
        yield r
    finally:
        await r.bridge.stop()
        await peer.close()
        await ctx.db.dispose()
