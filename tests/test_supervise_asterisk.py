"""A supervisor listens in on a live call on a real Asterisk 22 (issue #18).

A SIPp caller walks the IVR and is answered by a SIPp agent (kim.minji); the supervisor's
SIPp phone (super1, agents.yaml entry without skills) is registered. The console's job goes
through the AMI bridge, which originates to the supervisor's phone into the rendered
``dasan-supervise`` context; once answered, ChanSpy runs on the agent's channel. Runs when an
``asterisk`` binary is installed (with app_chanspy), and skips with the reason otherwise.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.config import Settings
from ivr.db import Database
from ivr.queues import load_queues
from ivr.site_secrets import sip_password
from tests.test_asterisk_real import (
    ASTERISK,
    MODULE_DIRS,
    Pbx,
    agent_login,
    agent_phone_scenario,
    agent_ready,
    agent_register_scenario,
    caller_scenario,
    configure,
    finished,
    free_port,
    ivr_server,
    korean_prompts,  # noqa: F401  (session fixture: the IVR's prompts)
    running_pbx,
    sipp,
    wait_until,
)
from tests.test_security_asterisk import bridge_on
from tests.test_supervise import give_phone

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(180),
]


@pytest.fixture
async def pbx(tmp_path: Path, settings: Settings, korean_prompts: Path) -> AsyncIterator[Pbx]:  # noqa: F811
    if not any((d / "app_chanspy.so").exists() for d in MODULE_DIRS):
        pytest.skip(f"Asterisk is installed without app_chanspy (looked in {MODULE_DIRS})")
    configure(settings, tmp_path)
    give_phone(settings)  # before rendering: super1's endpoint is in pjsip.conf
    settings.asterisk.sounds_dir = korean_prompts.parent
    async with running_pbx(settings, tmp_path, korean_prompts) as p:
        yield p


async def test_supervisor_listens_then_barges_on_a_live_call(tmp_path: Path, settings: Settings, pbx: Pbx) -> None:
    extension, secret = agent_login(settings)
    supervisor = next(a for a in load_queues(settings.queues_dir).agents if a.username == "super1")
    db = Database(settings.database_url)
    async with ivr_server(settings), bridge_on(settings) as bridge:
        results = await bridge.ctx.bus.subscribe("live.supervise")
        phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=15000, timeout=90)
        # The supervisor's desk phone registers, then waits to be rung (answers, then hangs up).
        port = free_port(socket.SOCK_DGRAM)
        register = await sipp(tmp_path, "super_register", agent_register_scenario(supervisor.extension), pbx, port,
                              "-s", supervisor.extension, "-au", supervisor.extension,
                              "-ap", sip_password(settings, supervisor), timeout=20)
        await finished(register, tmp_path, "super_register")
        super_phone = await sipp(tmp_path, "super_phone", agent_phone_scenario(supervisor.extension, 4000), pbx,
                                 port, timeout=60)
        caller = await sipp(tmp_path, "caller", caller_scenario(tmp_path, "12", "5"), pbx,
                            free_port(socket.SOCK_DGRAM), "-s", "120", timeout=90)

        async def talking() -> LiveCall | None:
            async with db.session() as session:
                return (await session.execute(select(LiveCall).where(
                    LiveCall.agent == extension, LiveCall.state == "connected"))).scalar_one_or_none()

        call = await wait_until(talking, timeout=60, what="the caller talking to kim.minji (AMI live state)")
        await bridge.ctx.bus.enqueue("agent.commands", {"action": "supervise", "username": "super1",
                                                        "supervisor": "super1", "agent": "kim.minji",
                                                        "mode": "listen", "call": call.linkedid})
        result = await results.get(timeout=20)
        assert result is not None and "error" not in result, result
        assert result["mode"] == "listen" and "answered" in result["message"]

        # The supervisor's channel runs ChanSpy on the agent's channel, from the rendered context.
        def spying() -> str:
            lines = pbx.cli("core show channels concise").splitlines()
            return next((line for line in lines if line.startswith(f"PJSIP/{supervisor.extension}-")
                         and "!ChanSpy!" in line), "")

        line = await wait_until(spying, timeout=20, what="ChanSpy on the supervisor's channel")
        fields = line.split("!")
        # concise: Channel!Context!Exten!Priority!State!Application!Data!...
        assert fields[1:3] == ["dasan-supervise", "listen"], line
        assert fields[6] == f"PJSIP/{extension}-,qEd", line  # the agent's channel prefix, then the options

        # Barge as a new session (the supervisor's phone is rung again): ChanSpy with B.
        await finished(super_phone, tmp_path, "super_phone")  # the supervisor hung up after 4 s
        super_phone = await sipp(tmp_path, "super_phone2", agent_phone_scenario(supervisor.extension, 3000), pbx,
                                 port, timeout=60)
        await bridge.ctx.bus.enqueue("agent.commands", {"action": "supervise", "username": "super1",
                                                        "supervisor": "super1", "agent": "kim.minji",
                                                        "mode": "barge", "call": call.linkedid})
        result = await results.get(timeout=20)
        assert result is not None and "error" not in result, result
        line = await wait_until(spying, timeout=20, what="ChanSpy in barge mode")
        assert line.split("!")[2] == "barge" and line.split("!")[6].endswith(",qEdB"), line
        await finished(super_phone, tmp_path, "super_phone2")

        # Nobody on a call: the bridge says so and rings nobody.
        await finished(phone, tmp_path, "agent_phone")
        await finished(caller, tmp_path, "caller")
        await wait_until(lambda: _none(talking), timeout=20, what="the call to end")
        await bridge.ctx.bus.enqueue("agent.commands", {"action": "supervise", "username": "super1",
                                                        "supervisor": "super1", "agent": "kim.minji", "mode": "listen"})
        result = await results.get(timeout=20)
        assert result is not None and "not on a call" in result["error"], result
        await results.close()
    await db.dispose()


async def _none(check: object) -> bool:
    return await check() is None  # type: ignore[operator]
