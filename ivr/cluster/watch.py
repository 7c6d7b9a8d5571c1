"""The ``cluster`` service: notices an Asterisk node that stopped and closes its calls' contacts.

Every ``cluster.watch_seconds`` each node's AMI port is tried (a TCP connection, nothing
sent). A node unreachable for ``cluster.lost_after_seconds`` has lost its calls (they lived in
its process): their contacts are closed as ``lost_with_node`` (``ivr.cluster.lost``), once per
outage. Every dasan node runs it; closing is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from ivr.cluster.lost import close_node_calls
from ivr.config import AsteriskNode, ClusterSettings
from ivr.db.database import Database

log = logging.getLogger("dasan.cluster")
CONNECT_TIMEOUT = 2.0  # seconds; a node this slow to accept a connection is not taken as dead


async def reachable(host: str, port: int, timeout: float) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class NodeWatch:
    def __init__(self, cluster: ClusterSettings, db: Database) -> None:
        self.cluster = cluster
        self.db = db
        self.down_since: dict[str, float] = {}
        self.closed: dict[str, list[int]] = {}  # node -> contacts closed in its current outage

    async def check(self, node: AsteriskNode) -> None:
        loop = asyncio.get_running_loop()
        if await reachable(node.ami_host, node.ami_port, CONNECT_TIMEOUT):
            if node.name in self.down_since:
                log.warning("Asterisk node %s reachable again", node.name)
            self.down_since.pop(node.name, None)
            self.closed.pop(node.name, None)
            return
        since = self.down_since.setdefault(node.name, loop.time())
        if node.name in self.closed or loop.time() - since < self.cluster.lost_after_seconds:
            return
        async with self.db.transaction() as session:
            ids = await close_node_calls(session, node.name, datetime.now(UTC))
        self.closed[node.name] = ids
        log.warning("Asterisk node %s unreachable for %.0f s: %d call contacts closed as lost_with_node",
                    node.name, loop.time() - since, len(ids))

    async def run(self) -> None:
        while True:
            for node in self.cluster.asterisk_nodes:
                try:
                    await self.check(node)
                except Exception:  # a database hiccup: try again next round
                    log.exception("cluster watch of %s", node.name)
            await asyncio.sleep(self.cluster.watch_seconds)


class ClusterService:
    """Registered as ``cluster`` in ivr.services; idle without ``cluster.asterisk_nodes``."""

    name = "cluster"

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.task: asyncio.Task[None] | None = None
        self.watch: NodeWatch | None = None

    async def start(self) -> list[str]:
        cluster: ClusterSettings = self.ctx.settings.cluster
        if not cluster.enabled:
            return ["off (no cluster.asterisk_nodes)"]
        self.watch = NodeWatch(cluster, self.ctx.db)
        self.task = asyncio.create_task(self.watch.run(), name="cluster-watch")
        return [f"watching {len(cluster.asterisk_nodes)} Asterisk nodes; a node unreachable "
                f"{cluster.lost_after_seconds:.0f} s has its calls closed as lost_with_node"]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
