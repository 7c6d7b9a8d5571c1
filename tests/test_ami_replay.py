"""The real Asterisk 22 AMI captures, replayed over TCP by AmiPeer into the bridge and a real DB."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from ivr.ami.metrics import current_metrics
from ivr.ami.models import OutboxJob
from ivr.bus import Bus, MemoryBus
from ivr.config import Settings
from ivr.db.models import Agent, Channel, Contact, ContactEvent, Recording
from ivr.records import open_contact
from ivr.speech.live_stream import live_stream_id
from tests.support.ami_harness import capture_chunks, index_of, rig, wait_for

ANSWERED_ID = "1795593159.8"
ABANDONED_ID = "1795593184.10"
# The timeline the answered capture must produce, in order (one row per real event).
ANSWERED_KINDS = [
    "recording_file", "recording_started", "queue_join", "agent_offered", "queue_leave", "agent_connected",
    "hangup_request", "agent_complete", "hangup", "hangup", "cdr", "recording_finished",
]
ABANDONED_KINDS = ["recording_file", "recording_started", "queue_join", "hangup_request", "queue_abandon",
                   "queue_leave", "hangup", "cdr", "recording_finished"]


async def _contact(r, call_id: str) -> tuple[Contact, list[str]]:  # type: ignore[no-untyped-def]
    async with r.ctx.db.session() as s:
        contact = (await s.execute(select(Contact).where(Contact.call_id == call_id))).scalar_one()
        kinds = list((await s.execute(
            select(ContactEvent.kind).where(ContactEvent.contact_id == contact.id).order_by(ContactEvent.id)
        )).scalars())
    return contact, kinds


async def _count(r, model) -> int:  # type: ignore[no-untyped-def]
    async with r.ctx.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_answered_call_fills_the_contact_record(settings: Settings, db_url: str, bus: Bus) -> None:
    screenpops = await bus.subscribe("agent.screenpop")
    async with rig(settings, db_url, bus) as r:
        await r.peer.play(capture_chunks("answered"))
        await r.settle()
        contact, kinds = await _contact(r, ANSWERED_ID)
        async with r.ctx.db.session() as s:
            kim = (await s.execute(select(Agent).where(Agent.extension == "agent1001"))).scalar_one()
            recording = (await s.execute(select(Recording))).scalar_one()
        assert kinds == ANSWERED_KINDS
        assert contact.channel == Channel.voice
        assert (contact.queue, contact.agent_id, contact.outcome) == ("general-ko", kim.id, "answered")
        assert (contact.wait_seconds, contact.talk_seconds) == (1.0, 6.0)
        assert contact.hangup_side == "agent"  # the agent's BYE: AgentComplete Reason: agent
        assert contact.answered_at is not None and contact.ended_at is not None
        assert contact.language == "ko"
        assert recording.path == "/var/spool/asterisk/spool/monitor/1795593159.8.wav"
        assert recording.contact_id == contact.id
        # The transcription worker's job, once.
        jobs = await bus.consume("recordings.finished", "test", "t1", count=10, block=0.5)
        assert [j.data for j in jobs] == [{"path": recording.path, "call_id": ANSWERED_ID, "contact_id": contact.id}]
        pops = [await screenpops.get(timeout=2) for _ in range(2)]
        assert [p and (p["event"], p["username"], p["extension"], p["contact_id"]) for p in pops] == [
            ("offered", "kim.minji", "agent1001", contact.id), ("connected", "kim.minji", "agent1001", contact.id)]
        # the AudioSocket UUID the rendered dialplan gives this call (speech.live_listen), from its linkedid
        assert [p and p["live_stream"] for p in pops] == [live_stream_id(contact.call_id)] * 2
        metrics = await current_metrics(r.ctx)
        q = metrics["queues"]["general-ko"]
        assert (q["answered"], q["abandoned"], q["service_level"], q["abandon_rate"]) == (1, 0, 1.0, 0.0)
        assert metrics["today"]["by_queue"] == {"general-ko": 1}
        assert metrics["today"]["by_channel"] == {"voice": 1}
    await screenpops.close()


async def test_ivr_written_contact_is_completed_not_duplicated(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        async with r.ctx.db.transaction() as s:
            ivr_contact = await open_contact(s, Channel.voice, call_id=ANSWERED_ID, language="ko", topic="transport",
                                             ivr_path="main>1")
        await r.peer.play(capture_chunks("answered"))
        await r.settle()
        contact, kinds = await _contact(r, ANSWERED_ID)
        assert contact.id == ivr_contact.id
        assert (contact.topic, contact.ivr_path, contact.outcome, contact.talk_seconds) == (
            "transport", "main>1", "answered", 6.0)
        assert await _count(r, Contact) == 1
        assert kinds == ANSWERED_KINDS


async def test_abandoned_call_and_live_waiting(settings: Settings, db_url: str) -> None:
    chunks = capture_chunks("abandoned")
    cut = index_of(chunks, "Event: QueueCallerJoin") + 1
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[:cut])
        await r.settle()
        waiting = (await current_metrics(r.ctx))["queues"]["general-ko"]
        assert waiting["waiting"] == 1 and waiting["longest_wait"] >= 0
        await r.peer.play(chunks[cut:])
        await r.settle()
        contact, kinds = await _contact(r, ABANDONED_ID)
        assert kinds == ABANDONED_KINDS
        assert (contact.queue, contact.outcome, contact.wait_seconds, contact.hangup_side) == (
            "general-ko", "abandoned", 5.0, "caller")
        assert contact.agent_id is None and contact.talk_seconds is None
        q = (await current_metrics(r.ctx))["queues"]["general-ko"]
        assert (q["waiting"], q["abandoned"], q["abandon_rate"], q["service_level"]) == (0, 1, 1.0, 0.0)


async def test_replayed_events_change_nothing(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        chunks = capture_chunks("answered")
        await r.peer.play(chunks)
        await r.settle()
        before = (await _count(r, Contact), await _count(r, ContactEvent), await _contact(r, ANSWERED_ID))
        await r.peer.play(chunks)  # the same bytes again
        await r.settle()
        after = (await _count(r, Contact), await _count(r, ContactEvent), await _contact(r, ANSWERED_ID))
        assert before[:2] == after[:2] == (1, len(ANSWERED_KINDS))
        assert before[2][0].updated_at == after[2][0].updated_at
        jobs = await r.ctx.bus.consume("recordings.finished", "g", "c", count=10, block=0.2)
        assert len(jobs) == 1  # one transcription job, not two


async def test_reconnect_in_the_middle_of_a_call(settings: Settings, db_url: str) -> None:
    """The link drops while caller and agent talk; after the reconnect the bridge resyncs
    (QueueStatus + CoreShowChannels) and Asterisk's stream resumes with some events resent."""
    chunks = capture_chunks("answered")
    cut = index_of(chunks, "Event: AgentConnect") + 1
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[:cut])
        await r.settle()
        async with r.ctx.db.session() as s:
            assert (await s.execute(select(Contact.outcome).where(Contact.call_id == ANSWERED_ID))).scalar_one() == "answered"
        r.peer.drop()
        await r.peer.wait_login(2)
        await wait_for(lambda: r.bridge.resyncs >= 2)
        second = r.peer.actions[[a.get("Action") for a in r.peer.actions].index("Login", 1):]
        assert {"QueueStatus", "CoreShowChannels"} <= {a.get("Action") for a in second}
        live = (await current_metrics(r.ctx))["queues"]["general-ko"]
        assert live["waiting"] == 0  # the caller is talking, not waiting
        await r.peer.play(chunks[cut - 3 :])  # resent overlap, then the rest of the call
        await r.settle()
        contact, kinds = await _contact(r, ANSWERED_ID)
        assert kinds == ANSWERED_KINDS
        assert (contact.outcome, contact.talk_seconds, contact.hangup_side) == ("answered", 6.0, "agent")
        assert contact.ended_at is not None


async def test_call_that_ended_while_disconnected_is_closed_by_resync(
    settings: Settings, db_url: str, tmp_path: Path
) -> None:
    chunks = capture_chunks("abandoned")
    cut = index_of(chunks, "Event: QueueCallerJoin") + 1
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[:cut])
        await r.settle()
        r.peer.refuse_logins = True  # Asterisk is back but our login fails for a while
        r.peer.drop()
        await r.peer.play(chunks[cut:])  # the caller hangs up while nobody listens
        await wait_for(lambda: r.bridge.conn.state == "login refused")
        r.peer.refuse_logins = False
        await r.peer.wait_login(2, timeout=30)
        await wait_for(lambda: r.bridge.resyncs >= 2, timeout=30)
        await r.settle()
        contact, kinds = await _contact(r, ABANDONED_ID)
        assert kinds == ["recording_file", "recording_started", "queue_join", "gap_ended"]
        assert contact.ended_at is not None
        assert (await current_metrics(r.ctx))["queues"]["general-ko"]["waiting"] == 0


async def test_transcription_job_survives_a_bus_outage_and_a_restart(settings: Settings, db_url: str) -> None:
    from ivr.bus.redis import RedisBus

    dead_bus = RedisBus("redis://127.0.0.1:1/0", "nobody")  # a real client, nothing listening
    async with rig(settings, db_url, dead_bus) as r:
        await r.peer.play(capture_chunks("answered"))
        await asyncio.sleep(0.05)
        assert await r.bridge.wait_idle(30, outbox=False)
        contact, kinds = await _contact(r, ANSWERED_ID)
        assert kinds == ANSWERED_KINDS and contact.ended_at is not None  # the record does not wait for the bus
        assert len(r.bridge._outbox) == 1
        async with r.ctx.db.session() as session:  # the job is durable in the outbox table
            assert [j["call_id"] for j in (await session.execute(select(OutboxJob.job))).scalars()] == [ANSWERED_ID]
        r.ctx.bus = MemoryBus()
        await r.restart_bridge()  # a new process would find the job in the DB the same way
        await r.settle()
        jobs = await r.ctx.bus.consume("recordings.finished", "w", "w", count=10, block=0.5)
        assert [j.data["call_id"] for j in jobs] == [ANSWERED_ID]
        async with r.ctx.db.session() as session:  # the bus has it: gone from the outbox
            assert (await session.execute(select(func.count()).select_from(OutboxJob))).scalar_one() == 0
        await r.restart_bridge()  # sent once: not sent again
        await r.settle()
        assert await r.ctx.bus.consume("recordings.finished", "w2", "w", count=10, block=0.2) != []  # same stream
        assert len(await r.ctx.bus.consume("recordings.finished", "w", "w", count=10, block=0.2)) == 0
    await dead_bus.close()


async def test_resync_is_retried_while_asterisk_is_still_loading_app_queue(
    settings: Settings, db_url: str, tmp_path: Path
) -> None:
    """Asterisk takes the login before app_queue is loaded (seen on a real Asterisk 22 just
    started): QueueStatus is an unknown command for a moment. The bridge tries again on the
    same connection, and the call that ended meanwhile is still closed by the resync."""
    chunks = capture_chunks("abandoned")
    cut = index_of(chunks, "Event: QueueCallerJoin") + 1
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[:cut])
        await r.settle()
        resyncs = r.bridge.resyncs
        r.peer.queue_module_loading = 2  # the next two QueueStatus actions fail
        r.peer.drop()
        await r.peer.play(chunks[cut:])  # the caller hangs up while nobody listens
        await r.peer.wait_login(2, timeout=30)
        await wait_for(lambda: r.bridge.resyncs > resyncs, timeout=30)
        await r.settle()
        assert r.peer.queue_module_loading == 0  # both refusals were met, then it went through
        contact, kinds = await _contact(r, ABANDONED_ID)
        assert kinds[-1] == "gap_ended" and contact.ended_at is not None
