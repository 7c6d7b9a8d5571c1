"""1,000 concurrent scripted calls against one FastAGI server, with no error.

The callers run in a separate process (as Asterisk would), all connected at once; the server
runs the real IVR on a real SQLite database in tmp_path and commits every step.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ivr.bus import MemoryBus
from ivr.db import Database
from ivr.db.models import Contact
from tests.support.ivr_harness import IvrHarness

CALLS = 1000
# script -> (IVR_RESULT, QUEUE, LANG, ivr_path)
MIX = {
    "3": ("queue", "general-ko", "ko", "main:3 > queue:general-ko"),
    "9 1 4": ("queue", "en", "en", "main:9 > languages:1 > main:4 > queue:en"),
    "9 2 1 2": ("queue", "zh", "zh", "main:9 > languages:2 > main:1 > transport:2 > queue:zh"),
    "9 3 0": ("queue", "ja", "ja", "main:9 > languages:3 > main:0 > queue:ja"),
    "9 4 T 5": ("queue", "vi", "vi", "main:9 > languages:4 > main:timeout > main:5 > queue:vi"),
    "9 5 2 2": ("queue", "mn", "mn", "main:9 > languages:5 > main:2 > waste:2 > queue:mn"),
    "1 1": ("hangup", "", "ko", "main:1 > transport:1 > answer:transport-lost"),
    "6 123456789012#": ("hangup", "", "ko", "main:6 > status:123456789012"),
}

CALLERS = """
import asyncio, json, sys
from ivr.agi.caller import ScriptedCaller
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
scripts = json.loads(sys.argv[4])
async def main():
    async def one(i):
        log = await ScriptedCaller(scripts[i % len(scripts)], callerid=f"0105555{i:04d}",
                                   linkedid=f"1795600000.{i}").call(host, port, timeout=300)
        return {"i": i, "vars": log.variables, "hung_up": log.hung_up, "heard": log.heard}
    for result in await asyncio.gather(*(one(i) for i in range(n))):
        print(json.dumps(result, ensure_ascii=False))
asyncio.run(main())
"""


async def test_thousand_concurrent_calls(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    harness = await IvrHarness(db, MemoryBus(), now=datetime(2026, 11, 25, 10, tzinfo=ZoneInfo("Asia/Seoul")),
                               command_timeout=120).start()
    scripts = list(MIX)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CALLERS, harness.host, str(harness.port), str(CALLS), json.dumps(scripts),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-3000:]
    finally:
        await harness.stop()
    assert harness.server is not None
    assert harness.server.failed == 0 and harness.server.served == CALLS
    results = [json.loads(line) for line in out.decode().splitlines()]
    assert len(results) == CALLS
    paths: dict[int, str] = {}
    for r in results:
        result, queue, lang, path = MIX[scripts[r["i"] % len(scripts)]]
        v = r["vars"]
        assert not r["hung_up"] and v["IVR_RESULT"] == result and v.get("QUEUE", "") == queue, r
        assert v["LANG"] == lang
        paths[int(v["CONTACT_ID"])] = path
    assert len(paths) == CALLS  # one contact per call
    async with db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Contact))).scalar_one() == CALLS
        rows = (await session.execute(select(Contact.id, Contact.ivr_path, Contact.call_id))).all()
    await db.dispose()
    for contact_id, ivr_path, call_id in rows:
        assert ivr_path == paths[contact_id]
        assert call_id.startswith("1795600000.")
