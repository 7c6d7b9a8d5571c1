"""A supervisor listens in on a live call on a real Asterisk 22 (issue #18).

A SIPp caller walks the IVR and is answered by a SIPp agent (kim.minji); the supervisor's
SIPp phone (super1, agents.yaml entry without skills) is registered. The console's job goes
through the AMI bridge, which originates to the supervisor's phone into the rendered
``dasan-supervise`` context; once answered, ChanSpy runs on the agent's channel. During the
session the supervisor's phone presses 5 then 6 (RFC 2833): Asterisk's DTMFEnd events reach the
bridge, which audits listen -> whisper -> barge; the citizen's keys (menu and survey digits) are
kept from the bridge's AMI user by manager.conf's filter. Runs when an ``asterisk`` binary is
installed (with app_chanspy), and skips with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.ami.connection import AmiConnection
from ivr.ami.models import LiveCall
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import AuditLog
from ivr.queues import load_queues
from ivr.site_secrets import sip_password
from tests.test_asterisk_real import (
    ASTERISK,
    MODULE_DIRS,
    Pbx,
    _answer,
    _hang_up,
    _ringing,
    _sipp_scenario,
    agent_login,
    agent_phone_scenario,
    agent_ready,
    agent_register_scenario,
    caller_scenario,
    configure,
    dtmf_pcap,
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


def supervisor_keys_scenario(folder: Path, extension: str, keys: str) -> str:
    """The supervisor's phone answers, then presses each key (RFC 2833) 1.5 s apart, waits 2 s
    and hangs up."""
    presses = "\n".join(f'  <pause milliseconds="1500"/>\n'
                        f'  <nop><action><exec play_pcap_audio="{dtmf_pcap(key, 40 + n, folder)}"/></action></nop>'
                        for n, key in enumerate(keys))
    return _sipp_scenario("supervisor switches modes", f"""  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="sip:[^&gt;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="ast_contact"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" check_it="true" assign_to="ast_from"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" check_it="true" assign_to="our_to"/>
    </action>
  </recv>
{_ringing(extension, "agent")}
  <pause milliseconds="500"/>
{_answer(extension, "agent")}
  <recv request="ACK" crlf="true"/>
{presses}
  <pause milliseconds="2000"/>
{_hang_up(extension)}""")


async def test_supervisor_listens_then_barges_on_a_live_call(tmp_path: Path, settings: Settings, pbx: Pbx) -> None:
    extension, secret = agent_login(settings)
    supervisor = next(a for a in load_queues(settings.queues_dir).agents if a.username == "super1")
    db = Database(settings.database_url)
    # A second session of the bridge's AMI user (same read classes and filters) sees every
    # DTMF event Asterisk lets through to the bridge.
    ami = settings.ami
    watcher = AmiConnection(ami.host, ami.port, ami.username, ami.secret)
    dtmf: list[dict[str, str]] = []

    async def watch() -> None:
        while True:
            await watcher.has_events.wait()
            dtmf.extend(e for e in watcher.take(10000) if e.get("Event", "").startswith("DTMF"))

    async with ivr_server(settings), bridge_on(settings) as bridge:
        watcher.start()
        watching = asyncio.create_task(watch())
        results = await bridge.ctx.bus.subscribe("live.supervise")
        phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=15000, timeout=90)
        # The supervisor's desk phone registers, then waits to be rung (answers, then hangs up).
        port = free_port(socket.SOCK_DGRAM)
        register = await sipp(tmp_path, "super_register", agent_register_scenario(supervisor.extension), pbx, port,
                              "-s", supervisor.extension, "-au", supervisor.extension,
                              "-ap", sip_password(settings, supervisor), timeout=20)
        await finished(register, tmp_path, "super_register")
        super_phone = await sipp(tmp_path, "super_phone", supervisor_keys_scenario(tmp_path, supervisor.extension, "56"),
                                 pbx, port, timeout=60)
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

        # The supervisor pressed 5 then 6 and hung up: each switch is audited like a start, and
        # shown on the supervisor's wallboard (live.supervise).
        await finished(super_phone, tmp_path, "super_phone")
        switched = [await results.get(timeout=10), await results.get(timeout=10)]
        assert [(m["mode"], m["from"], m["username"]) for m in switched if m] == [
            ("whisper", "listen", "super1"), ("barge", "whisper", "super1")], switched
        async with db.session() as session:
            rows = list((await session.execute(select(AuditLog).where(AuditLog.action == "supervise")
                                               .order_by(AuditLog.id))).scalars())
        assert [(a.actor, a.target, a.data["from"], a.data["mode"], a.data["call"]) for a in rows] == [
            ("super1", "agent:kim.minji", "listen", "whisper", call.linkedid),
            ("super1", "agent:kim.minji", "whisper", "barge", call.linkedid)]

        # Barge as a new session (the supervisor's phone is rung again): ChanSpy with B.
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
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await watcher.close()
    await db.dispose()
    # Only the supervisor's keys reached the AMI user: no DTMFBegin, no citizen's menu or
    # survey digit (the caller pressed 1, 2 and 5s), nothing Sent.
    assert [(e["Context"], e["Digit"], e["Direction"]) for e in dtmf] == [
        ("dasan-supervise", "5", "Received"), ("dasan-supervise", "6", "Received")], dtmf


async def _none(check: object) -> bool:
    return await check() is None  # type: ignore[operator]
