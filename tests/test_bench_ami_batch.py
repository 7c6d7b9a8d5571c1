"""``AmiBridge(batch=...)``, the knob bench/bench_ami.py's "one commit per event" row turns."""

from __future__ import annotations

from sqlalchemy import func, select

from ivr.ami.protocol import event_messages, retarget
from ivr.ami.service import BATCH, AmiBridge
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db.models import Contact
from tests.support.ami_harness import capture_chunks, rig


async def test_batch_1_commits_every_event_on_its_own(settings: Settings, sqlite_url: str) -> None:
    answered = capture_chunks("answered")
    chunks: list[bytes] = []
    for i in range(3):
        chunks += retarget(answered, {"1795593159.8": f"1800000000.{2 * i}", "1795593165.9": f"1800000000.{2 * i + 1}"})
    events = len(event_messages(chunks))
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        assert r.bridge.batch == BATCH
        await r.bridge.stop()
        r.bridge = AmiBridge(r.ctx, callbacks=False, batch=1)
        await r.bridge.start()
        await r.peer.wait_login(2)
        await r.settle()
        applied, batches = r.bridge.applied, r.bridge.batches
        await r.peer.play(chunks)
        await r.settle()
        assert r.bridge.applied - applied == events
        assert r.bridge.batches - batches == events  # one transaction per event
        async with r.ctx.db.session() as s:
            assert await s.scalar(select(func.count()).select_from(Contact)) == 3
