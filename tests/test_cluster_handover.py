"""A dead dasan node's callbacks and transcription jobs are taken over by the survivors
(docs/cluster.md, "What a dead node's jobs become").

Callbacks: two ``dasan up --only ami`` processes (two dasan nodes) on the real PostgreSQL and
Redis, both logged in to one AmiPeer standing in for Asterisk. The node that wins the request
sends an Originate the peer never answers, and is killed with SIGKILL while it waits. Once its
lease (``bus.claim_after_seconds``) has run out the survivor takes the request over (the call
never reached Asterisk, so nobody was called) and dials it: one answered attempt, one result
per attempt, two Originates in all. A callback whose call Asterisk had placed is not dialled
again. Transcription: a job whose handling fails every time ends in the dead-letter stream
with its reason after ``bus.max_deliveries`` deliveries (the kill -9 takeover of a
transcription job: tests/test_speech_redis_workers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import REDIS_URL
from sqlalchemy import select
from test_fault_kill import _env
from test_fault_kit import Dasan

from ivr.ami.callbacks import CallbackDialer
from ivr.ami.handlers import CALLBACK_LEG
from ivr.ami.models import AgentState
from ivr.bus.base import dead_letter_stream
from ivr.bus.redis import RedisBus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import CallbackRequest, Channel, ContactEvent, Recording
from ivr.queues import load_queues
from ivr.records import get_or_create_citizen, open_contact
from ivr.speech.worker import GROUP, STREAM, TranscriptionWorker, enqueue_recording
from tests.support.ami_peer import AmiPeer
from tests.support.waiting import eventually

CLAIM_AFTER = 3.0  # bus.claim_after_seconds of the test's nodes
POLL = 2.0  # the callback dialer's tick
QUEUES = ("general-ko", "general-wide", "en")


async def _callback_request(db: Database, phone: str) -> tuple[int, int]:
    """A callback request as the IVR leaves it, and an agent of its queue free in Asterisk."""
    async with db.transaction() as s:
        citizen = await get_or_create_citizen(s, "phone", phone)
        contact = await open_contact(s, Channel.voice, citizen, call_id=f"cb-{uuid.uuid4().hex[:8]}",
                                     language="ko", outcome="callback")
        req = CallbackRequest(contact_id=contact.id, phone=phone, queue="general-ko", language="ko",
                              requested_at=datetime.now(UTC) - timedelta(seconds=30))
        s.add(req)
        s.add(AgentState(username="kim.minji", extension="agent1001", logged_in=True,
                         queues={q: 0 for q in QUEUES}, state="available"))
        await s.flush()
        return req.id, contact.id


async def _results(db: Database, contact_id: int, kind: str) -> list[dict[str, object]]:
    async with db.session() as s:
        rows = (await s.execute(select(ContactEvent.data).where(
            ContactEvent.contact_id == contact_id, ContactEvent.kind == kind).order_by(ContactEvent.id))).scalars()
        return [dict(r) for r in rows]


async def _request(db: Database, req_id: int) -> CallbackRequest:
    async with db.session() as s:
        req = await s.get(CallbackRequest, req_id)
    assert req is not None
    return req


def _node_name(node: Dasan) -> str:
    assert node.proc is not None
    return f"{socket.gethostname()}:{node.proc.pid}"


async def test_a_killed_nodes_callback_is_dialled_once_by_the_survivor(
        settings: Settings, pg_url: str, redis_bus: RedisBus, tmp_path: Path) -> None:
    peer = AmiPeer(settings.ami.username, settings.ami.secret)
    peer.queues |= set(QUEUES)
    for queue in QUEUES:  # the counsellor is logged in on the (stand-in) Asterisk
        peer._queue_add("", {"Queue": queue, "Interface": "PJSIP/agent1001", "MemberName": "kim.minji"})
    # The first Originate is queued and then nothing: its dialer waits (and is killed meanwhile).
    peer.originate_results = ["HOLD", "Success"]
    port = await peer.start()
    settings.database.url = pg_url
    db = Database(pg_url)
    req_id, contact_id = await _callback_request(db, "+82 10-7777-0001")
    env = _env(settings, tmp_path, DASAN__BUS__BACKEND="redis", DASAN__BUS__REDIS_URL=REDIS_URL,
               DASAN__BUS__PREFIX=redis_bus.prefix, DASAN__BUS__CLAIM_AFTER_SECONDS=str(CLAIM_AFTER),
               DASAN__AMI__ENABLED="true", DASAN__AMI__HOST="127.0.0.1", DASAN__AMI__PORT=str(port),
               DASAN__AMI__USERNAME=settings.ami.username, DASAN__AMI__SECRET=settings.ami.secret,
               DASAN__ASTERISK__TRUNK_CONTACT="sip:gw.example.org:5060",
               DASAN__QUEUES_DIR=str(settings.queues_dir))
    nodes = [Dasan(["ami"], env, tmp_path), Dasan(["ami"], env, tmp_path)]
    try:
        for node in nodes:
            node.start()

        async def dialing() -> CallbackRequest | None:
            req = await _request(db, req_id)
            return req if req.status == "dialing" and peer.held else None

        first = await eventually(dialing, "a node to dial the callback", timeout=60, interval=0.1)
        victim = next(n for n in nodes if _node_name(n) == first.dialing_by)
        survivor = next(n for n in nodes if n is not victim)
        assert first.attempts == 1 and peer.held[0]["ChannelId"] == f"callback-{req_id}-1"
        assert first.dialing_until is not None

        async def renewed_past_first_lease() -> CallbackRequest | None:
            req = await _request(db, req_id)
            assert (req.status, req.attempts, req.dialing_by) == ("dialing", 1, first.dialing_by), \
                "a live dialer's attempt was taken over"
            assert req.dialing_until is not None and first.dialing_until is not None
            late = req.dialing_until - first.dialing_until > timedelta(seconds=CLAIM_AFTER + 1)
            return req if late and datetime.now(UTC) > first.dialing_until + timedelta(seconds=1) else None

        # The live dialer renews its lease while it waits: past the first lease, the other node
        # (ticking every 2 s) leaves it alone.
        await eventually(renewed_past_first_lease, "the live dialer to renew its lease", timeout=CLAIM_AFTER * 4,
                         interval=0.1)
        assert len([a for a in peer.actions if a.get("Action") == "Originate"]) == 1
        victim.kill9()  # mid-attempt: the row says dialing, its Originate has no result yet
        killed = time.monotonic()

        async def taken_over() -> CallbackRequest | None:
            req = await _request(db, req_id)
            return req if req.attempts == 2 or req.status != "dialing" else None

        await eventually(taken_over, "the survivor to take the callback over", timeout=CLAIM_AFTER + POLL + 20,
                         interval=0.05)
        claim_delay = time.monotonic() - killed

        async def done() -> CallbackRequest | None:
            req = await _request(db, req_id)
            return req if req.status in ("done", "failed") else None

        final = await eventually(done, "the survivor's attempt to end", timeout=60, interval=0.1)
        print(f"callback taken over {claim_delay:.1f} s after the kill (claim_after {CLAIM_AFTER} s, tick {POLL} s)")
        # The lease is renewed every CLAIM_AFTER/3: it runs out at most CLAIM_AFTER after the
        # kill, and the survivor's next tick takes it.
        assert claim_delay < CLAIM_AFTER + POLL + 3, claim_delay
        assert (final.status, final.attempts, final.dialing_by, final.dialing_until) == ("done", 2, None, None), \
            final.last_result
        originates = [a for a in peer.actions if a.get("Action") == "Originate"]
        assert [a["ChannelId"] for a in originates] == [f"callback-{req_id}-1", f"callback-{req_id}-2"]
        attempts = await _results(db, contact_id, "callback_attempt")
        assert [(a["attempt"], a["dialer"]) for a in attempts] == [(1, _node_name(victim)), (2, _node_name(survivor))]
        results = await _results(db, contact_id, "callback_result")
        assert [(r["attempt"], r["result"]) for r in results] == [(1, "lost_with_node"), (2, "answered")]
        assert results[0]["dialer"] == _node_name(victim) and results[0]["taken_over_by"] == _node_name(survivor)
        assert results[0]["status"] == "waiting"
    finally:
        for node in nodes:
            node.stop()
        await peer.close()
        await db.dispose()


async def test_a_dead_nodes_callback_whose_call_was_placed_is_not_dialled_again(
        settings: Settings, pg_url: str) -> None:
    """The dead node's Originate reached Asterisk (its callback leg was ingested): the citizen
    may have been called, so the survivor marks the request failed rather than call twice."""
    db = Database(pg_url)
    try:
        placed_id, placed_contact = await _callback_request(db, "+82 10-7777-0002")
        async with db.transaction() as s:
            waiting = CallbackRequest(phone="+82 10-7777-0003", queue="general-wide", language="ko",
                                      requested_at=datetime.now(UTC))
            s.add(waiting)
            await s.flush()
            lost_id = waiting.id
            past = datetime.now(UTC) - timedelta(seconds=1)
            for rid in (placed_id, lost_id):
                req = await s.get(CallbackRequest, rid)
                assert req is not None
                req.status, req.attempts, req.dialing_by, req.dialing_until = "dialing", 1, "gone:1", past
            s.add(ContactEvent(contact_id=placed_contact, kind="callback_leg", source="ami",
                               external_id=f"{CALLBACK_LEG}callback-{placed_id}-1", data={}))
        qconf = load_queues(settings.queues_dir)

        # take_over needs no AMI connection: it only reads and writes the database
        survivor = CallbackDialer(None, db, qconf, "sip:gw", node="survivor:2", lease=CLAIM_AFTER)  # type: ignore[arg-type]
        other = CallbackDialer(None, db, qconf, "sip:gw", node="survivor:3", lease=CLAIM_AFTER)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        assert sorted(await survivor.take_over(now)) == sorted([placed_id, lost_id])
        assert await other.take_over(now) == []  # one node takes a request over, once
        placed, lost = await _request(db, placed_id), await _request(db, lost_id)
        assert placed.status == "failed" and "not dialled again" in (placed.last_result or "")
        assert lost.status == "waiting" and lost.next_attempt_at is not None  # nobody was called: again
        assert placed.dialing_by is None and lost.dialing_by is None
        results = await _results(db, placed_contact, "callback_result")
        assert [(r["result"], r["status"], r["taken_over_by"]) for r in results] == [
            ("lost_with_node", "failed", "survivor:2")]
        # A live dialer's lease is not taken.
        async with db.transaction() as s:
            req = await s.get(CallbackRequest, lost_id)
            assert req is not None
            req.status, req.attempts, req.dialing_by = "dialing", 2, "alive:1"
            req.dialing_until = datetime.now(UTC) + timedelta(seconds=CLAIM_AFTER)
        assert await survivor.take_over(datetime.now(UTC)) == []
    finally:
        await db.dispose()


async def test_nodes_racing_for_one_callback_dial_it_once(settings: Settings, pg_url: str) -> None:
    """Every node's dialer sees the same request due at the same moment: the conditional
    UPDATE gives it to exactly one of them."""
    db = Database(pg_url)
    try:
        req_id, contact_id = await _callback_request(db, "+82 10-7777-0004")
        qconf = load_queues(settings.queues_dir)
        dialers = [CallbackDialer(None, db, qconf, "sip:gw", node=f"node{i}:1", lease=CLAIM_AFTER)  # type: ignore[arg-type]
                   for i in range(8)]
        now = datetime.now(UTC)
        won = await asyncio.gather(*(d._mark_dialing(req_id, now) for d in dialers for _ in range(3)))
        assert sorted(w for w in won if w is not None) == [1]
        req = await _request(db, req_id)
        assert (req.status, req.attempts) == ("dialing", 1) and req.dialing_by in {d.node for d in dialers}
        assert len(await _results(db, contact_id, "callback_attempt")) == 1
    finally:
        await db.dispose()


async def test_a_job_that_keeps_failing_ends_in_the_dead_letter_stream(
        settings: Settings, pg_url: str, redis_bus: RedisBus) -> None:
    """A transcription job the database refuses every time (its contact no longer exists) is
    handed out again after each idle time and, past bus.max_deliveries, moved with the reason
    to ``recordings.finished.dead``; the worker goes on with the next job."""
    settings.database.url = pg_url
    settings.bus.claim_after_seconds, settings.bus.max_deliveries = 0.5, 3
    db = Database(pg_url)
    worker = TranscriptionWorker(db, redis_bus, settings, name="poisoned-0", block=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        store = settings.recordings.dir
        store.mkdir(parents=True, exist_ok=True)
        poison = await enqueue_recording(redis_bus, store / "2026" / "gone.wav", contact_id=987654321)
        dead = dead_letter_stream(STREAM)

        async def dead_letters() -> list[tuple[bytes, dict[bytes, bytes]]]:
            return list(await redis_bus.redis.xrange(redis_bus.key(dead)))

        entries = await eventually(dead_letters, "the poison job in the dead-letter stream", timeout=30,
                                   interval=0.1)
        assert len(entries) == 1
        entry = json.loads(entries[0][1][b"data"])
        assert entry["id"] == poison and entry["stream"] == STREAM and entry["group"] == GROUP
        assert entry["deliveries"] == 4  # handed out 3 times, then dead-lettered at the 4th
        assert "handed out 4 times" in entry["reason"] and "ForeignKeyViolation" in entry["reason"], entry["reason"]
        assert entry["data"]["contact_id"] == 987654321

        # Nothing is left pending (the entry is written, then the job acked), and the worker
        # goes on: the next job is handled.
        async def acked() -> bool:
            return await redis_bus.pending(STREAM, GROUP) == 0

        await eventually(acked, "the poison job to leave the pending list")
        await enqueue_recording(redis_bus, store / "2026" / "also-gone.wav")

        async def failed_missing() -> str | None:
            async with db.session() as s:
                return (await s.execute(select(Recording.transcription_error).where(
                    Recording.path == "2026/also-gone.wav"))).scalar()

        assert "not found" in (await eventually(failed_missing, "the next job to be handled", timeout=30))
        assert len(await dead_letters()) == 1
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.dispose()
