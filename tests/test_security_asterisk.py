"""Issue #21 on a real Asterisk: a pause reason and a menu field with line breaks change nothing
there, and the bridge's AMI user cannot run what least privilege leaves out.

Runs when an ``asterisk`` binary is on PATH (the throw-away Asterisk of test_asterisk_real);
no SIPp needed: the IVR call is an AMI Originate of a Local channel into the IVR's context.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ivr import services
from ivr.agi.server import AgiService
from ivr.ami.agents import AgentCommandError
from ivr.ami.connection import AmiConnection
from ivr.ami.service import AmiBridge
from ivr.ami.wire import UnsafeAmiValue
from ivr.config import Settings
from ivr.context import AppContext
from ivr.engine.runtime import MENU_FILE
from ivr.yamlfile import DataError
from tests.test_asterisk_real import ASTERISK, Pbx, korean_prompts, pbx, wait_until  # noqa: F401  (the throw-away Asterisk's fixtures)

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(120),
]


@asynccontextmanager
async def bridge_on(settings: Settings) -> AsyncIterator[AmiBridge]:
    ctx = await AppContext.create(settings, migrate=False)
    bridge = AmiBridge(ctx)
    await bridge.start()
    try:
        await wait_until(bridge.conn.logged_in.is_set, what="the AMI bridge's login")
        yield bridge
    finally:
        await bridge.stop()
        await ctx.close()


def member_line(asterisk: Pbx, queue: str, extension: str) -> str:
    return next((line for line in asterisk.cli(f"queue show {queue}").splitlines() if f"PJSIP/{extension}" in line), "")


async def test_pause_reason_with_line_breaks_changes_nothing_in_asterisk(tmp_path: Path, settings: Settings,
                                                                        pbx: Pbx) -> None:  # noqa: F811
    marker = tmp_path / "PWNED"
    injection = (f"x\r\n\r\nAction: Originate\r\nChannel: Local/s@dasan-ivr\r\nApplication: MixMonitor\r\n"
                 f"Data: {tmp_path}/m.wav,,touch {marker}\r\nAsync: true\r\n\r\n"
                 "Action: DBPut\r\nFamily: pwned\r\nKey: by\r\nVal: x")
    async with bridge_on(settings) as bridge:
        await bridge.control.login("kim.minji")
        await wait_until(lambda: member_line(pbx, "general-ko", "agent1001"), what="agent1001 in general-ko")
        with pytest.raises(AgentCommandError, match="line breaks"):
            await bridge.control.pause("kim.minji", injection)
        with pytest.raises(UnsafeAmiValue):
            await bridge.conn.send({"Action": "QueuePause", "Interface": "PJSIP/agent1001", "Paused": "true",
                                    "Reason": injection})
        assert "(paused" not in member_line(pbx, "general-ko", "agent1001")
        # Least privilege: the bridge's own user cannot do what the injection wanted, even when asked
        # in well-formed actions (Asterisk answers Error; nothing runs).
        system = await bridge.conn.send({"Action": "Originate", "Channel": "Local/s@dasan-ivr",
                                         "Application": "System", "Data": f"touch {marker}"}, timeout=15)
        assert system.get("Response") == "Error", dict(system)
        dbput = await bridge.conn.send({"Action": "DBPut", "Family": "pwned", "Key": "by", "Val": "x"})
        assert dbput.get("Response") == "Error" and "denied" in str(dbput.get("Message", "")).lower(), dict(dbput)
        # The path works for a plain reason.
        await bridge.control.pause("kim.minji", "교육 training")
        await wait_until(lambda: "(paused" in member_line(pbx, "general-ko", "agent1001"), what="the plain pause")
    assert "0 results found" in pbx.cli("database show pwned")
    assert not marker.exists()
    assert not re.search(r"Executing \[.*\] (MixMonitor|System)\(.*PWNED", pbx.console())


async def test_menu_field_with_line_breaks_changes_nothing_in_asterisk(tmp_path: Path, settings: Settings,
                                                                      pbx: Pbx) -> None:  # noqa: F811
    marker = tmp_path / "PWNED"
    injection = f'dasan\nEXEC MixMonitor "{tmp_path}/m2.wav,,touch {marker}"\nNOOP'
    menu = settings.agi.menus_dir / MENU_FILE
    good = menu.read_text(encoding="utf-8")
    menu.write_text(good.replace("sound_folder: dasan", f"sound_folder: {json.dumps(injection)}", 1), encoding="utf-8")
    ctx = await AppContext.create(settings, migrate=False)
    try:
        with pytest.raises(DataError, match=r"main\.yaml:\d+: sound_folder"):  # the loader refuses the file
            services.build("agi", ctx)
        menu.write_text(good, encoding="utf-8")
        ivr = services.build("agi", ctx)
        assert isinstance(ivr, AgiService)
        ivr.runtime.engine.menus.sound_folder = injection  # as if it had got past the loader: the wire refuses
        await ivr.start()
        pbx.cli("agi set debug on")
        conn = AmiConnection("127.0.0.1", settings.ami.port, settings.ami.username, settings.ami.secret)
        conn.start()
        try:
            await wait_until(conn.logged_in.is_set, what="AMI login")
            await conn.send({"Action": "Originate", "Channel": "Local/s@dasan-ivr", "Application": "Wait",
                             "Data": "20", "Async": "true"}, timeout=30)
            await wait_until(lambda: "dasan: IVR done" in pbx.console(), timeout=40, what="the IVR to finish")
            pbx.cli("channel request hangup all")
            # A folder with a space, quotes and a backslash reaches Asterisk as one file name.
            ivr.runtime.engine.menus.sound_folder = 'my "dasan" \\ sounds'
            await conn.send({"Action": "Originate", "Channel": "Local/s@dasan-ivr", "Application": "Wait",
                             "Data": "20", "Async": "true"}, timeout=30)
            await wait_until(lambda: 'Unable to open my "dasan" \\ sounds/' in pbx.console(), timeout=40,
                             what="Asterisk to look for the quoted sound name")
        finally:
            pbx.cli("channel request hangup all")
            await conn.close()
            await ivr.stop()
    finally:
        await ctx.close()
    console = pbx.console()
    assert "AGI Rx << ANSWER" in console, console[-3000:]  # the IVR did talk to Asterisk
    assert not re.search(r"AGI Rx << (EXEC|NOOP)", console), console[-3000:]
    assert not marker.exists()


AWKWARD_NAME = 'Kim "MJ" <666> \\ x; y'


@pytest.fixture
def awkward_agent_name(settings: Settings) -> str:
    """agents.yaml with a display name holding quotes, angle brackets, a backslash and a ';'
    (before the throw-away Asterisk renders its configuration)."""
    path = settings.queues_dir / "agents.yaml"
    text = path.read_text(encoding="utf-8")
    assert "name: 김민지" in text
    path.write_text(text.replace("name: 김민지", f"name: {json.dumps(AWKWARD_NAME)}", 1), encoding="utf-8")
    return AWKWARD_NAME


async def test_a_quote_in_an_agent_name_stays_inside_callerid(awkward_agent_name: str, pbx: Pbx) -> None:  # noqa: F811
    shown = pbx.cli("pjsip show endpoint agent1001")
    line = next((x for x in shown.splitlines() if x.strip().startswith("callerid ")), "")
    # Asterisk read back the whole name and the number (it escapes the name again to show it).
    assert line.split(":", 1)[1].strip() == r'"Kim \"MJ\" <666> \\ x; y" <agent1001>', shown[-3000:]
