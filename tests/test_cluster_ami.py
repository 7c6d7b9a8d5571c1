"""The AMI bridge of a cluster: a connection per Asterisk node, each resyncing its own calls.

Two AmiPeers replay the same captured Asterisk 22 call (tests/data/asterisk-captures), each
with its node's systemname before the ids, as ``systemname`` in asterisk.conf makes Asterisk
write them (``ast1-1795593159.8``). Without the prefix the two calls would have one id.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.ami.service import AmiService
from ivr.bus import MemoryBus
from ivr.config import AsteriskNode, Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Contact
from tests.support.ami_harness import capture_chunks, index_of, wait_for
from tests.support.ami_peer import AmiPeer

CALL = "1795593159.8"  # the captured answered call's Linkedid
_IDS = re.compile(rb"^([A-Za-z]*(?:[Uu]nique[Ii][Dd]|[Ll]inked[Ii][Dd])): (\d+\.\d+)\r$", re.M)


def on_node(chunks: list[bytes], node: str) -> list[bytes]:
    """The capture as node ``node`` sends it: every uniqueid and linkedid prefixed."""
    return [_IDS.sub(lambda m: m.group(1) + b": " + node.encode() + b"-" + m.group(2) + b"\r", c) for c in chunks]


async def _contacts(db: Database) -> dict[str, tuple[bool, str | None]]:
    async with db.session() as s:
        return {c.call_id or "": (c.ended_at is not None, c.outcome)
                for c in (await s.scalars(select(Contact).where(Contact.call_id.like(f"%{CALL}")))).all()}


async def _live(db: Database) -> list[str]:
    async with db.session() as s:
        return sorted((await s.scalars(select(LiveCall.linkedid))).all())


async def test_a_bridge_per_node_keeps_their_calls_apart(settings: Settings, db_url: str) -> None:
    peers = {name: AmiPeer(settings.ami.username, settings.ami.secret) for name in ("ast1", "ast2")}
    settings.cluster.asterisk_nodes = [
        AsteriskNode(name=name, sip_host=f"127.0.0.{3 + i}", ami_host="127.0.0.1", ami_port=await peer.start())
        for i, (name, peer) in enumerate(peers.items())]
    settings.ami.enabled = True
    settings.database.url = db_url
    ctx = AppContext(settings, Database(db_url), MemoryBus())
    service = AmiService(ctx)
    try:
        lines = await service.start()
        assert {line.split(":")[0] for line in lines} == {"ast1", "ast2"}
        for peer in peers.values():
            await peer.wait_login(1)
        await wait_for(lambda: all(b.resyncs >= 1 for b in service.bridges))
        one, two = service.bridges
        assert one.primary and not two.primary and one.others == [two]

        chunks = capture_chunks("answered")
        joined = index_of(chunks, "Event: QueueCallerJoin") + 1
        # node 2's caller is waiting in the queue...
        await peers["ast2"].play(on_node(chunks[:joined], "ast2"))
        await two.conn.send({"Action": "Ping"}, timeout=30)
        assert await two.wait_idle(60)
        assert await _live(ctx.db) == [f"ast2-{CALL}"]
        # ... when node 1's AMI connection breaks: node 1's resync must not take it for gone
        resyncs = one.resyncs
        peers["ast1"].drop()
        await peers["ast1"].wait_login(2)
        await wait_for(lambda: one.resyncs > resyncs)
        assert await one.wait_idle(60)
        assert await _live(ctx.db) == [f"ast2-{CALL}"]
        assert (await _contacts(ctx.db))[f"ast2-{CALL}"] == (False, None)

        # the same captured call on both nodes: two contacts, one each, never merged
        await peers["ast2"].play(on_node(chunks[joined:], "ast2"))
        await peers["ast1"].play(on_node(chunks, "ast1"))
        for bridge in service.bridges:
            await bridge.conn.send({"Action": "Ping"}, timeout=30)
            assert await bridge.wait_idle(60)
        contacts = await _contacts(ctx.db)
        assert set(contacts) == {f"ast1-{CALL}", f"ast2-{CALL}"}
        assert all(ended and outcome == "answered" for ended, outcome in contacts.values()), contacts
        assert await _live(ctx.db) == []
    finally:
        await service.stop()
        for peer in peers.values():
            await peer.close()
        await ctx.db.dispose()


async def test_agent_commands_reach_every_node(settings: Settings, db_url: str) -> None:
    peers = [AmiPeer(settings.ami.username, settings.ami.secret) for _ in range(2)]
    settings.cluster.asterisk_nodes = [
        AsteriskNode(name=f"ast{i + 1}", sip_host=f"127.0.0.{3 + i}", ami_host="127.0.0.1", ami_port=await p.start())
        for i, p in enumerate(peers)]
    settings.ami.enabled = True
    settings.database.url = db_url
    bus = MemoryBus()
    ctx = AppContext(settings, Database(db_url), bus)
    service = AmiService(ctx)
    try:
        await service.start()
        for peer in peers:
            await peer.wait_login(1)
        await wait_for(lambda: all(b.resyncs >= 1 for b in service.bridges))
        qconf = service.bridges[0].qconf
        for peer in peers:
            peer.queues = set(qconf.queues)
        agent = qconf.agents[0]
        await bus.enqueue("agent.commands", {"action": "login", "username": agent.username})
        # QueueAdd for each of the agent's queues, on both nodes
        for peer in peers:
            await wait_for(lambda p=peer: {q for (q, i) in p.members if agent.extension in i} == set(agent.skills),
                           timeout=15)
            assert any(a.get("Action") == "QueueAdd" for a in peer.actions)
    finally:
        await service.stop()
        for peer in peers:
            await peer.close()
        await ctx.db.dispose()
