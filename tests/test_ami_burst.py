"""A burst of 50,000 real-format events over TCP into the real DB: nothing lost, nothing doubled.

The calls are the captured answered and abandoned calls with new Uniqueids/Linkedids. After
the burst the link drops and the last ~5,000 events are sent again (as after a reconnect).
"""

from __future__ import annotations

from sqlalchemy import func, select
from test_ami_replay import ABANDONED_KINDS, ANSWERED_KINDS

from ivr.ami.models import LiveCall
from ivr.ami.protocol import event_messages, retarget
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db.models import Contact, ContactEvent, Recording
from tests.support.ami_harness import capture_chunks, rig, wait_for

TOTAL_EVENTS = 50_000


def burst() -> tuple[list[bytes], int, int, int]:
    answered, abandoned = capture_chunks("answered"), capture_chunks("abandoned")
    per_answered, per_abandoned = len(event_messages(answered)), len(event_messages(abandoned))
    chunks: list[bytes] = []
    events = n_answered = n_abandoned = 0
    i = 0
    while events < TOTAL_EVENTS:
        i += 1
        if i % 3:
            chunks += retarget(answered, {"1795593159.8": f"1800000000.{2 * i}", "1795593165.9": f"1800000000.{2 * i + 1}"})
            events, n_answered = events + per_answered, n_answered + 1
        else:
            chunks += retarget(abandoned, {"1795593184.10": f"1900000000.{i}"})
            events, n_abandoned = events + per_abandoned, n_abandoned + 1
    return chunks, events, n_answered, n_abandoned


async def test_burst_of_50000_events_nothing_lost_no_duplicates(settings: Settings, db_url: str) -> None:
    chunks, events, n_answered, n_abandoned = burst()
    assert events >= TOTAL_EVENTS
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks)
        await r.settle()
        assert r.bridge.applied >= events  # plus FullyBooted
        r.peer.drop()
        await r.peer.wait_login(2)
        await wait_for(lambda: r.bridge.resyncs >= 2)
        tail, count = [], 0
        for chunk in reversed(chunks):
            tail.insert(0, chunk)
            count += len(event_messages([chunk]))
            if count >= 5000:
                break
        await r.peer.play(tail)
        await r.settle()
        async with r.ctx.db.session() as s:
            contacts = await s.scalar(select(func.count()).select_from(Contact))
            rows = await s.scalar(select(func.count()).select_from(ContactEvent))
            distinct = await s.scalar(select(func.count(func.distinct(ContactEvent.external_id))))
            outcomes = dict((await s.execute(select(Contact.outcome, func.count()).group_by(Contact.outcome))).all())
            talk = await s.scalar(select(func.sum(Contact.talk_seconds)))
            recordings = await s.scalar(select(func.count()).select_from(Recording))
            live = await s.scalar(select(func.count()).select_from(LiveCall))
        assert contacts == n_answered + n_abandoned
        assert rows == distinct == n_answered * len(ANSWERED_KINDS) + n_abandoned * len(ABANDONED_KINDS)
        assert outcomes == {"answered": n_answered, "abandoned": n_abandoned}
        assert talk == 6.0 * n_answered
        assert recordings == contacts
        assert live == 0
        jobs = await r.ctx.bus.consume("recordings.finished", "t", "t", count=100_000, block=0.1)
        assert len(jobs) == contacts
        assert len({j.data["call_id"] for j in jobs}) == contacts
