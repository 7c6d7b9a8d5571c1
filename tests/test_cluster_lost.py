"""A dead Asterisk node's calls: closed as lost_with_node, the other node's untouched
(ivr.cluster.lost), and noticed by the ``cluster`` service from the node's AMI port
(ivr.cluster.watch). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.cluster.lost import LOST_WITH_NODE, close_node_calls
from ivr.cluster.watch import NodeWatch
from ivr.config import AsteriskNode, ClusterSettings
from ivr.db.database import Database
from ivr.db.models import Channel, Contact, ContactEvent
from tests.support.waiting import eventually


async def _calls(db: Database) -> dict[str, int]:
    now = datetime.now(UTC)
    rows = {
        "ast1-1733000000.1": dict(outcome=None, ended_at=None),  # in the IVR or queue
        "ast1-1733000000.7": dict(outcome="answered", ended_at=None),  # talking to an agent
        "ast1-1733000000.9": dict(outcome="abandoned", ended_at=now - timedelta(minutes=1)),  # over
        "ast11-1733000000.2": dict(outcome=None, ended_at=None),  # another node whose name starts alike
        "ast2-1733000000.3": dict(outcome=None, ended_at=None),
    }
    async with db.transaction() as session:
        for call_id, values in rows.items():
            session.add(Contact(channel=Channel.voice, call_id=call_id, started_at=now - timedelta(minutes=2),
                                **values))
        session.add(LiveCall(linkedid="ast1-1733000000.7", state="connected", queue="general-ko"))
        session.add(LiveCall(linkedid="ast2-1733000000.3", state="queued", queue="general-ko"))
    async with db.sessions() as session:
        return {c.call_id or "": c.id for c in (await session.scalars(select(Contact))).all()}


async def _state(db: Database) -> dict[str, tuple[str | None, bool]]:
    async with db.sessions() as session:
        return {c.call_id or "": (c.outcome, c.ended_at is not None) for c in (await session.scalars(select(Contact))).all()}


async def test_a_dead_nodes_calls_are_closed_and_no_other(db: Database) -> None:
    ids = await _calls(db)
    async with db.transaction() as session:
        closed = await close_node_calls(session, "ast1", datetime.now(UTC))
    assert sorted(closed) == sorted([ids["ast1-1733000000.1"], ids["ast1-1733000000.7"]])
    state = await _state(db)
    assert state["ast1-1733000000.1"] == (LOST_WITH_NODE, True)
    assert state["ast1-1733000000.7"] == ("answered", True)  # it was answered: that stays
    assert state["ast1-1733000000.9"] == ("abandoned", True)
    assert state["ast11-1733000000.2"] == (None, False) and state["ast2-1733000000.3"] == (None, False)
    async with db.sessions() as session:
        live = [c.linkedid for c in (await session.scalars(select(LiveCall))).all()]
        events = (await session.scalars(select(ContactEvent).where(ContactEvent.kind == LOST_WITH_NODE))).all()
    assert live == ["ast2-1733000000.3"]
    assert sorted(e.contact_id for e in events) == sorted(closed)
    # twice (the other dasan node does it too): nothing more
    async with db.transaction() as session:
        assert await close_node_calls(session, "ast1", datetime.now(UTC)) == []


async def test_the_watch_closes_calls_of_a_node_whose_ami_stops(db: Database) -> None:
    ids = await _calls(db)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    other = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    cluster = ClusterSettings(
        asterisk_nodes=[AsteriskNode(name="ast1", sip_host="127.0.0.3", ami_host="127.0.0.1", ami_port=port),
                        AsteriskNode(name="ast2", sip_host="127.0.0.4", ami_host="127.0.0.1",
                                     ami_port=other.sockets[0].getsockname()[1])],
        watch_seconds=0.05, lost_after_seconds=0.3)
    watch = NodeWatch(cluster, db)
    task = asyncio.create_task(watch.run())
    try:
        await eventually(lambda: not watch.down_since and watch.closed == {}, "both nodes seen alive")
        assert (await _state(db))["ast1-1733000000.1"] == (None, False)
        server.close()
        await server.wait_closed()
        await eventually(lambda: "ast1" in watch.closed, "ast1's calls closed", timeout=10)
        assert sorted(watch.closed["ast1"]) == sorted([ids["ast1-1733000000.1"], ids["ast1-1733000000.7"]])
        assert "ast2" not in watch.down_since
        state = await _state(db)
        assert state["ast1-1733000000.1"] == (LOST_WITH_NODE, True) and state["ast2-1733000000.3"] == (None, False)
    finally:
        task.cancel()
        other.close()
