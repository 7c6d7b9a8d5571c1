"""Queue callback: place in line, Originate through the queue, retries, a record of each attempt."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ivr.ami.callbacks import CallbackDialer
from ivr.ami.models import LiveCall
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db.models import CallbackRequest, Channel, ContactEvent
from ivr.records import open_contact
from tests.support.ami_harness import capture_chunks, index_of, rig, wait_for


async def _request(r, phone: str, queue: str, requested_at: datetime) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with r.ctx.db.transaction() as s:
        contact = await open_contact(s, Channel.voice, call_id=f"cb-{phone}", language="en", outcome="callback")
        req = CallbackRequest(contact_id=contact.id, phone=phone, queue=queue, language="en",
                              requested_at=requested_at)
        s.add(req)
        await s.flush()
        return req.id, contact.id


async def test_callback_waits_its_turn_then_retries_until_answered(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"en", "general-wide"}
        dialer = CallbackDialer(r.bridge.conn, r.ctx.db, retry_delays=(0.0,), max_attempts=3)
        now = datetime.now(UTC)
        req_id, contact_id = await _request(r, "+82 10-5555-1234", "en", now - timedelta(seconds=30))
        assert await dialer.tick() == []  # no agent of the queue is available yet

        await r.bridge.control.login("kim.minji")  # en, proficiency 3
        await r.settle()
        # A caller who joined the queue before the request is ahead of it.
        async with r.ctx.db.transaction() as s:
            s.add(LiveCall(linkedid="earlier-caller", queue="en", state="queued", joined_at=now - timedelta(seconds=60)))
        assert await dialer.tick() == []
        async with r.ctx.db.transaction() as s:
            await s.delete(await s.get(LiveCall, "earlier-caller"))

        r.peer.originate_results = ["Failure", "Success"]
        assert await dialer.tick() == [req_id]
        await wait_for(lambda: sum(a.get("Action") == "Originate" for a in r.peer.actions) == 1)

        async def status() -> CallbackRequest:
            async with r.ctx.db.session() as s:
                req = await s.get(CallbackRequest, req_id)
            assert req is not None
            return req

        for _ in range(200):
            if (await status()).status == "waiting" and (await status()).attempts == 1:
                break
            await asyncio.sleep(0.02)
        assert await dialer.tick() == [req_id]  # retry (delay 0)
        for _ in range(500):
            if (await status()).status == "done":
                break
            await asyncio.sleep(0.02)
        req = await status()
        assert (req.status, req.attempts) == ("done", 2)
        originate = [a for a in r.peer.actions if a.get("Action") == "Originate"]
        assert [a["ChannelId"] for a in originate] == [f"callback-{req_id}-1", f"callback-{req_id}-2"]
        assert originate[0]["Channel"] == "Local/en@dasan-callback"
        assert (originate[0]["Context"], originate[0]["Exten"]) == ("dasan-callback-out", "01055551234")  # ivr.records.normalize_phone
        async with r.ctx.db.session() as s:
            timeline = [(e.kind, e.data.get("attempt"), e.data.get("result")) for e in (await s.execute(
                select(ContactEvent).where(ContactEvent.contact_id == contact_id).order_by(ContactEvent.id))).scalars()]
        assert timeline == [("callback_attempt", 1, None), ("callback_result", 1, "failed"),
                            ("callback_attempt", 2, None), ("callback_result", 2, "answered")]
        assert await dialer.tick() == []


async def test_callback_gives_up_after_max_attempts(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = CallbackDialer(r.bridge.conn, r.ctx.db, retry_delays=(0.0,), max_attempts=2)
        req_id, _ = await _request(r, "01012345678", "vi", datetime.now(UTC))
        r.peer.originate_results = ["Failure", "Failure"]
        for _ in range(2):
            await asyncio.sleep(0.02)
            started: list[int] = []
            for _ in range(300):
                started = await dialer.tick()
                if started:
                    break
                await asyncio.sleep(0.02)
            assert started == [req_id]
        for _ in range(300):
            async with r.ctx.db.session() as s:
                req = await s.get(CallbackRequest, req_id)
            assert req is not None
            if req.status == "failed":
                break
            await asyncio.sleep(0.02)
        assert (req.status, req.attempts) == ("failed", 2)
        assert req.last_result is not None and req.last_result.startswith("failed")


async def test_replay_capture_does_not_disturb_callbacks(settings: Settings, db_url: str) -> None:
    """A callback row and a live call from the captures coexist: metrics count both."""
    from ivr.ami.metrics import current_metrics

    chunks = capture_chunks("abandoned")
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[: index_of(chunks, "Event: QueueCallerJoin") + 1])
        await r.settle()
        await _request(r, "0212345678", "general-ko", datetime.now(UTC))
        q = (await current_metrics(r.ctx))["queues"]["general-ko"]
        assert (q["waiting"], q["callbacks_waiting"]) == (1, 1)
