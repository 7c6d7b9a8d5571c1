"""The FastAGI IVR against a real Asterisk (runs whenever an ``asterisk`` binary is installed).

A throw-away Asterisk (own asterisk.conf in tmp_path, no SIP) originates Local channels into
a context that runs ``AGI(agi://127.0.0.1:<port>/main)`` exactly as the project's dialplan
does. No DTMF reaches a Local channel, so the calls exercise the timeout path (three
timeouts -> counsellor) and a hang-up mid-menu; the prompt files are not installed, which
also exercises Asterisk's replies for missing sounds.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.bus import MemoryBus
from ivr.db import Database
from ivr.db.models import Contact
from tests.support.asterisk import ASTERISK, running, write_config
from tests.support.ivr_harness import MENUS_DIR, IvrHarness

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no asterisk binary installed (PATH or /usr/sbin/asterisk)"),
]


@pytest.fixture
async def ivr(sqlite_url: str, tmp_path: Path) -> AsyncIterator[IvrHarness]:
    menus = tmp_path / "menus"
    menus.mkdir()
    text = (MENUS_DIR / "main.yaml").read_text(encoding="utf-8")
    (menus / "main.yaml").write_text(text.replace("timeout_seconds: 5 ", "timeout_seconds: 1 "), encoding="utf-8")
    db = Database(sqlite_url)
    harness = await IvrHarness(db, MemoryBus(), menus_dir=menus).start()
    yield harness
    await harness.stop()
    await db.dispose()


@pytest.fixture
def asterisk(tmp_path: Path, ivr: IvrHarness) -> Iterator[list[str]]:
    conf = write_config(tmp_path, ("pbx_config.so", "res_speech.so", "res_agi.so", "func_channel.so",
                                   "app_playback.so", "res_clioriginate.so"), {
        "extensions.conf": "[general]\nstatic = yes\nwriteprotect = yes\n\n[dasan-ivr]\n"
                           "exten => s,1,Answer()\n same => n,Set(CHANNEL(language)=ko)\n"
                           f" same => n,AGI(agi://127.0.0.1:{ivr.port}/main)\n same => n,Hangup()\n",
        "logger.conf": "", "cdr.conf": ""})
    cli = [str(ASTERISK), "-C", str(conf)]

    def booted() -> bool:
        return subprocess.run([*cli, "-rx", "core waitfullybooted"], capture_output=True, timeout=30).returncode == 0

    with running(conf, booted):
        yield cli


async def originate(cli: list[str], wait_seconds: int) -> None:
    done = await asyncio.to_thread(subprocess.run, [*cli, "-rx", f"channel originate Local/s@dasan-ivr "
                                                               f"application Wait {wait_seconds}"],
                                   capture_output=True, timeout=30)
    assert done.returncode == 0 and b"No such command" not in done.stdout, done.stdout + done.stderr


async def finished_calls(ivr: IvrHarness, count: int) -> None:
    for _ in range(600):  # a bound, not a speed check
        if len(ivr.calls) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(ivr.calls)} calls finished")


async def test_real_asterisk_timeouts_reach_a_counsellor(ivr: IvrHarness, asterisk: list[str]) -> None:
    await originate(asterisk, 20)
    await finished_calls(ivr, 1)
    call = ivr.calls[0]
    assert call.result == "queue" and call.queue == "general-ko" and call.topic == "counsellor"
    assert call.path == ["main:timeout"] * 3 + ["queue:general-ko"]
    assert re.fullmatch(r"\d+\.\d+", call.call_id)  # Asterisk's Linkedid via GET FULL VARIABLE
    async with ivr.db.session() as session:
        row = (await session.execute(select(Contact).where(Contact.id == call.contact_id))).scalar_one()
    assert row.call_id == call.call_id and row.queue == "general-ko" and row.language == "ko"


async def test_real_asterisk_hang_up_mid_menu(ivr: IvrHarness, asterisk: list[str]) -> None:
    await originate(asterisk, 2)  # the other half hangs up after 2 s, during the menu
    await finished_calls(ivr, 1)
    call = ivr.calls[0]
    assert call.result == "caller_hangup" and call.path[-1] == "hangup"
    assert ivr.server is not None and ivr.server.failed == 0
    async with ivr.db.session() as session:
        row = (await session.execute(select(Contact).where(Contact.id == call.contact_id))).scalar_one()
    assert row.hangup_side == "caller" and row.ivr_path.endswith("hangup")
