"""The IVR's record and the AMI bridge write the same contacts at the same moment on PostgreSQL.

At 80 calls/s on a real Asterisk the IVR's batched contact update and the bridge's contact
update deadlocked; the IVR's batch was dropped and calls lost their record or their outcome.
Here callers in another process (as Asterisk) go through the real FastAGI IVR in waves while an
``AmiPeer`` replays the captured answered call for the very same calls (same Linkedids), side by
side and in the opposite order, to the real bridge; both commit into one PostgreSQL database at
once, whose row updates are slowed to 2 ms each (a loaded server: statements hold their first
rows while they get to the last, which is when two writers deadlock). Every call must end with
one contact carrying both writers' facts (the IVR's path and timeline, the bridge's outcome,
agent leg and hang-up), no write lost, and, since every writer takes its row locks in one
order, PostgreSQL never has to break a deadlock. On the code before the fix this fails in
every run (deadlocks, and calls without their IVR record).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import func, select, text

from bench.ami_feed import call_chunks
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Contact, ContactEvent
from tests.support.ami_harness import rig
from tests.support.ivr_harness import IvrHarness

ROOT = Path(__file__).resolve().parent.parent

CALLS = 240
WAVE = 80  # callers in the IVR at once; the AMI events of their calls are played meanwhile
BASE = 1796200000  # the AMI feed's caller Linkedid of call n is f"{BASE + n}.{2 * n}"
OPEN = datetime(2026, 11, 25, 10, tzinfo=ZoneInfo("Asia/Seoul"))
# Several steps (each one a contact update), then the en queue; callers take 20-80 ms per prompt.
DIGITS = ["T", "9", "1", "T", "4"]
PATH = "main:timeout > main:9 > languages:1 > main:timeout > main:4 > queue:en"

CALLERS = """
import asyncio, json, sys
from bench.agi_load import tcp_call
host, port, calls, wave, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
digits = sys.argv[6].split()
async def main():
    async def one(n):
        result = await tcp_call(host, port, "main", digits, pace=(0.02, 0.08), timeout=300,
                                linkedid=f"{base + n}.{2 * n}")
        return {"n": n, "ok": result.ok, "error": result.error, "vars": result.variables}
    results = []
    for first in range(0, calls, wave):
        print(f"wave {first}", flush=True)
        results += await asyncio.gather(*(one(n) for n in range(first, min(calls, first + wave))))
    print("done", flush=True)
    for result in results:
        print(json.dumps(result), flush=True)
asyncio.run(main())
"""


def _steps_last_first(chunks: list[bytes], first: int, calls: int, per_call: int) -> list[list[bytes]]:
    """The calls ``first``.. side by side, as a busy Asterisk sends them: step k holds the k-th
    chunk of every call (each call's own events stay in order), the last call first. The bridge
    then commits each step in a transaction of its own that touches every call of the wave,
    in the opposite order from the IVR."""
    return [[chunks[n * per_call + k] for n in reversed(range(first, first + calls))] for k in range(per_call)]


async def _slow_row_updates(url: str) -> None:
    """Every contact row update takes 2 ms, as on a loaded database server: a statement that
    changes many rows then holds the first ones while it gets to the last, as at 80 calls/s."""
    async with await psycopg.AsyncConnection.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                                                     autocommit=True) as conn:
        await conn.execute("CREATE FUNCTION loaded_server_row() RETURNS trigger LANGUAGE plpgsql AS "
                           "$$ BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END $$")
        await conn.execute("CREATE TRIGGER loaded_server BEFORE UPDATE ON contacts FOR EACH ROW "
                           "EXECUTE FUNCTION loaded_server_row()")


async def test_ivr_and_ami_bridge_write_the_same_contacts_at_once(settings: Settings, pg_url: str) -> None:
    await _slow_row_updates(pg_url)
    bus = MemoryBus()
    chunks = call_chunks(CALLS, BASE)
    per_call = len(chunks) // CALLS
    ivr_db = Database(pg_url)
    harness = await IvrHarness(ivr_db, bus, now=OPEN, command_timeout=120).start()
    try:
        async with rig(settings, pg_url, bus) as r:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CALLERS, harness.host, str(harness.port), str(CALLS), str(WAVE), str(BASE),
                " ".join(DIGITS), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
            assert proc.stdout is not None
            while (line := (await proc.stdout.readline()).decode().split()) != ["done"]:
                assert line and line[0] == "wave", line
                # The wave's calls as the bridge hears them, while the same calls are in the IVR.
                for step in _steps_last_first(chunks, int(line[1]), WAVE, per_call):
                    await r.peer.play(step)
                    assert await r.bridge.wait_idle(60)
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()[-3000:]
            await r.settle()
            await harness.engine.writer.flush()
            ivr_conflicts, bridge_conflicts = harness.engine.writer.group.conflicts, r.bridge.conflicts
            print(f"deadlocks/serialization failures: IVR {ivr_conflicts}, AMI bridge {bridge_conflicts}")
            assert ivr_conflicts.lost == 0 and bridge_conflicts.lost == 0
    finally:
        await harness.stop()
    assert harness.server is not None and harness.server.failed == 0
    told: dict[str, int] = {}
    for text_line in out.decode().splitlines():
        result = json.loads(text_line)
        v = result["vars"]
        assert result["ok"] and v["IVR_RESULT"] == "queue" and v["QUEUE"] == "en", result
        told[f"{BASE + result['n']}.{2 * result['n']}"] = int(v["CONTACT_ID"])
    assert len(told) == CALLS
    async with ivr_db.session() as session:
        contacts = {c.call_id: c for c in (await session.scalars(select(Contact))).all()}
        kinds = {(cid, kind): n for cid, kind, n in await session.execute(
            select(ContactEvent.contact_id, ContactEvent.kind, func.count()).group_by(
                ContactEvent.contact_id, ContactEvent.kind))}
        # One lock order for every writer: PostgreSQL never had to end a transaction to break a cycle.
        deadlocks = await session.scalar(text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))
    await ivr_db.dispose()
    assert deadlocks == 0
    assert len(contacts) == CALLS  # one contact per call: nobody's opened twice, nobody's missing
    for call_id, contact_id in told.items():
        contact = contacts[call_id]
        assert contact.id == contact_id
        # the IVR's facts
        assert contact.ivr_path == PATH and contact.language == "en" and contact.topic is not None, call_id
        assert kinds.get((contact.id, "ivr_finished")) == 1, call_id
        # the bridge's facts
        assert contact.outcome == "answered" and contact.talk_seconds is not None, call_id
        assert contact.answered_at is not None and contact.ended_at is not None and contact.hangup_side, call_id
        assert kinds.get((contact.id, "agent_complete")) == 1 and kinds.get((contact.id, "hangup")), call_id
