"""Process AGI (agi_scripts/dasan_agi.py, pyst2): the same menus over a real child process's pipes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import select

from ivr.agi.caller import CallLog, ScriptedCaller
from ivr.db import Database
from ivr.db.models import Contact

SCRIPT = Path(__file__).resolve().parent.parent / "agi_scripts" / "dasan_agi.py"


async def run_process_agi(sqlite_url: str, tmp_path: Path, caller: ScriptedCaller, route: str = "main") -> CallLog:
    env = {**os.environ, "DASAN__DATABASE__URL": sqlite_url, "DASAN__DATA_DIR": str(tmp_path),
           "DASAN_CONFIG": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), route, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path)
    assert proc.stdin is not None and proc.stdout is not None
    async with asyncio.timeout(60):
        await caller.converse(proc.stdout, proc.stdin)
        proc.stdin.close()
        _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return caller.log


async def test_process_agi_runs_the_menus(sqlite_url: str, tmp_path: Path) -> None:
    log = await run_process_agi(sqlite_url, tmp_path, ScriptedCaller("* 2 2"))
    assert log.heard == ["dasan/main-menu", "dasan/main-menu", "dasan/waste-menu", "dasan/transfer"]
    assert (log.variables["QUEUE"], log.variables["TOPIC"], log.variables["IVR_RESULT"]) == \
        ("general-ko", "waste", "queue")
    db = Database(sqlite_url)
    try:
        async with db.session() as session:
            row = (await session.execute(select(Contact).where(
                Contact.id == int(log.variables["CONTACT_ID"])))).scalar_one()
    finally:
        await db.dispose()
    assert row.ivr_path == "main:* > main:2 > waste:2 > queue:general-ko"
    assert row.call_id == log.variables["CHANNEL(linkedid)"]


async def test_process_agi_hang_up_and_survey(sqlite_url: str, tmp_path: Path) -> None:
    # the HANGUP line and 511 replies (pyst2 alone would desynchronise) end the call cleanly
    log = await run_process_agi(sqlite_url, tmp_path, ScriptedCaller("9 H"))
    # nothing is sent to a hung-up channel: the contact is found by the call's Linkedid
    assert log.hung_up and "IVR_RESULT" not in log.variables and "CONTACT_ID" not in log.variables
    db = Database(sqlite_url)
    try:
        async with db.session() as session:
            row = (await session.execute(select(Contact).where(
                Contact.call_id == log.variables["CHANNEL(linkedid)"]))).scalar_one()
        contact_id = str(row.id)
        assert row.ivr_path == "main:9 > hangup" and row.hangup_side == "caller"
        survey = await run_process_agi(sqlite_url, tmp_path, ScriptedCaller(
            "5", route="survey", variables={"CONTACT_ID": contact_id}), route="survey")
        assert survey.heard == ["dasan/survey-question", "dasan/survey-thanks"]
        async with db.session() as session:
            row = (await session.execute(select(Contact).where(Contact.id == int(contact_id)))).scalar_one()
        assert row.satisfaction == 5
    finally:
        await db.dispose()


async def test_process_agi_with_a_missing_prompt(sqlite_url: str, tmp_path: Path) -> None:
    caller = ScriptedCaller("4", missing={"dasan/main-menu", "dasan/transfer"})
    log = await run_process_agi(sqlite_url, tmp_path, caller)
    assert (log.variables["QUEUE"], log.variables["TOPIC"]) == ("general-ko", "tax")
    assert "CHANNEL STATUS" in log.commands and any(c.startswith("WAIT FOR DIGIT") for c in log.commands)
