"""Live transcription: an asyncio AudioSocket server that turns a call's audio into partials.

AudioSocket (Asterisk 22's res_audiosocket / app_audiosocket; protocol in the Asterisk docs
"AudioSocket"): TCP, every message a 3-byte header, one byte kind and a big-endian 16-bit
payload length, then the payload. Kinds: 0x00 hang-up, 0x01 the stream's UUID (16 bytes,
sent first), 0x03 a DTMF digit, 0x10 audio (16-bit signed little-endian slin, 8 kHz, mono),
0xff an error (optional code). The dialplan sends each call's audio here on a side branch, so
the call never waits on this server: if it is down, AudioSocket fails on that branch only.

Each connection is one speaker's audio of a call: the dialplan forks each leg (ChanSpy option
``o``: only the audio that leg sends) to its own stream, whose UUID names the call and the
speaker (``ivr.speech.live_stream``); a UUID that names no speaker is labelled with the
server's default (``mixed``). Each connection gets one vosk recognizer. Audio is decoded in a worker thread (vosk is C++
and releases the GIL), and every change of the running hypothesis is published on the bus
as ``transcript.partial`` ``{"call_id", "speaker", "text", "final", "end"}`` (``call_id``: the
call's stream id, the same for both speakers; ``end``: this speaker's stream closed; its text
may be empty), personal data masked.
Partials are not stored: the transcript on record is made after the call from the recording.

A sentence's last word often shows only in its final result, which the model's own endpoint
rules (0.5-1 s of trailing silence in the best path) give 1-1.5 s after the words, or only
when the next sentence starts. So the live recognizer's model is loaded with
``speech.live_decoder`` laid over ``speech.decoder`` (``live_store``): shorter endpoint rules
(the final sooner) and a smaller ``max-active`` (less CPU per call); the after-call
transcription keeps its own settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ivr.redaction.engine import mask_text
from ivr.speech.audio import resample, rms
from ivr.speech.live_stream import stream_speaker
from ivr.speech.recognizer import POOL, ModelStore, Stream, decoder_lines, dithered, shared_store
from ivr.speech.tokens import words_only

if TYPE_CHECKING:
    from ivr.config import SpeechSettings

log = logging.getLogger(__name__)

KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_AUDIO, KIND_ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
TOPIC = "transcript.partial"
RATE = 8000
# Decode every 0.2 s of audio (speech.live_chunk_ms): a partial reaches the agent about that
# soon after the words.
DECODE_SECONDS = 0.2


def live_store(speech: SpeechSettings) -> ModelStore:
    """The models live recognizers use: ``speech.decoder`` with ``speech.live_decoder`` over it
    (the workers' own store, model shared, when ``live_decoder`` is empty)."""
    return shared_store(speech.models, decoder_lines({**speech.decoder, **speech.live_decoder}))


def chunk_bytes(seconds: float) -> int:
    """Bytes of 8 kHz 16-bit audio in ``seconds`` (whole samples)."""
    return max(2, int(RATE * seconds) * 2)

Publish = Callable[[str, dict[str, Any]], Awaitable[Any]]


# The dialplan asks ``CURL(http://<live_listen>/health)`` before AudioSocket() and connects only
# on "ok": app_audiosocket's failed connect closes its socket twice (res_audiosocket.c,
# ast_audiosocket_connect, Asterisk 22), and the second close() can hit a descriptor another
# channel opened in between. No AudioSocket message starts with "GET" (kind 0x47 does not exist).
HEALTH_PROBE = b"GET /health"
HEALTH_ANSWER = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


async def answer_health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer an HTTP GET (the dialplan's check that this server is up) with "ok"."""
    with contextlib.suppress(asyncio.TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        writer.write(HEALTH_ANSWER)
        await writer.drain()


class ProtocolError(ValueError):
    """The peer broke the AudioSocket protocol; the message says how."""


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message (for peers and tests)."""
    return struct.pack(">BH", kind, len(payload)) + payload


async def read_message(reader: asyncio.StreamReader, header: bytes | None = None) -> tuple[int, bytes]:
    """One message (its 3-byte header already read when ``header`` is given)."""
    header = header if header is not None else await reader.readexactly(3)
    kind, length = struct.unpack(">BH", header)
    return kind, await reader.readexactly(length) if length else b""


@dataclass
class LiveCall:
    """One call's stream: a recognizer, and the last text sent so only changes go out."""

    call_id: str
    speaker: str
    stream: Stream  # a pooled recognizer (recognizer.POOL), given back when the call ends
    model_rate: int
    last: str = ""
    audio_bytes: int = 0
    peak: int = 0  # loudest 0.2 s chunk (RMS of 16-bit samples): was anything heard at all
    fed: int = 0  # bytes given to the recognizer (where the dither noise goes on)
    result: dict[str, Any] | None = None  # vosk's last final result (with word times if SetWords)

    def heard(self, pcm8: bytes) -> None:
        self.audio_bytes += len(pcm8)
        self.peak = max(self.peak, rms(pcm8))

    def feed(self, pcm8: bytes) -> tuple[str, bool]:
        """(text, final) after this audio; runs in a worker thread."""
        data = dithered(resample(pcm8, RATE, self.model_rate), self.fed)  # as after the call (recognizer.py)
        self.fed += len(data)
        if self.stream.accept(data):
            self.result = self.stream.result()
            return str(self.result.get("text", "")), True
        return str(self.stream.partial().get("partial", "")), False

    def finish(self) -> str:
        """The last result; the recognizer goes back to the pool for the next call."""
        self.result = self.stream.final()
        POOL.give_back(self.stream)
        return str(self.result.get("text", ""))


def live_call(store: ModelStore, language: str, call_id: str, speaker: str) -> LiveCall:
    """One stream's recognizer (the bench and tests make theirs the same way)."""
    model, model_rate = store.get(language)
    return LiveCall(call_id, speaker, POOL.take(model, model_rate), model_rate)


@dataclass(frozen=True)
class StreamHeard:
    """What one finished stream carried (logged; the last 100 kept for checks and the bench)."""

    call_id: str
    speaker: str
    seconds: float
    peak: int


class AudioSocketServer:
    """Serves AudioSocket connections: one live recognizer per stream, partials on the bus."""

    def __init__(self, store: ModelStore, publish: Publish, language: str = "ko",
                 speaker: str = "mixed", chunk_seconds: float = DECODE_SECONDS) -> None:
        self.store, self.publish, self.language, self.speaker = store, publish, language, speaker
        self.decode_bytes = chunk_bytes(chunk_seconds)  # audio per decode step (one partial each)
        self.server: asyncio.Server | None = None
        self.calls = 0
        # seconds from the arrival of a decode chunk's last frame to its partial on the bus
        # (for bench/bench_transcribe.py; the last 10,000 kept)
        self.lags: list[float] = []
        self.finished: deque[StreamHeard] = deque(maxlen=100)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (0 picks a free one)."""
        await asyncio.to_thread(self.store.get, self.language)  # load before the first call
        self.server = await asyncio.start_server(self._serve, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header = await reader.readexactly(3)
            if header == HEALTH_PROBE[:3]:
                await answer_health(reader, writer)
                return
            await self.handle(reader, header)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.info("audiosocket: peer went away")
        except ProtocolError as exc:
            log.warning("audiosocket: %s", exc)
            with contextlib.suppress(ConnectionError):
                writer.write(frame(KIND_ERROR, b"\x01"))
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, header: bytes | None = None) -> None:
        kind, payload = await read_message(reader, header)
        if kind != KIND_UUID or len(payload) != 16:
            raise ProtocolError(f"first message must be the UUID (kind 0x01, 16 bytes), got kind "
                                f"0x{kind:02x} with {len(payload)} bytes")
        call_id, speaker = stream_speaker(str(uuid.UUID(bytes=payload)))
        call = live_call(self.store, self.language, call_id, speaker or self.speaker)
        self.calls += 1
        buffered = bytearray()
        while True:
            try:
                kind, payload = await read_message(reader)
            except asyncio.IncompleteReadError:
                break  # closing the socket is a hang-up too
            if kind == KIND_HANGUP:
                break
            if kind == KIND_ERROR:
                log.warning("audiosocket %s: error from Asterisk %s", call.call_id, payload.hex())
                break
            if kind != KIND_AUDIO:
                continue  # DTMF and kinds added later carry nothing to transcribe
            buffered += payload
            if len(buffered) >= self.decode_bytes:
                arrived = time.perf_counter()
                chunk, buffered = bytes(buffered), bytearray()
                call.heard(chunk)
                text, final = await asyncio.to_thread(call.feed, chunk)
                if await self._send(call, text, final):
                    self.lags = [*self.lags[-9999:], time.perf_counter() - arrived]
        if buffered:
            call.heard(bytes(buffered))
            text, final = await asyncio.to_thread(call.feed, bytes(buffered))
            await self._send(call, text, final)
        await self._send(call, await asyncio.to_thread(call.finish), True, end=True)
        heard = StreamHeard(call.call_id, call.speaker, call.audio_bytes / (2 * RATE), call.peak)
        self.finished.append(heard)
        log.info("audiosocket %s %s: %.1f s of audio, peak level %d", heard.call_id, heard.speaker,
                 heard.seconds, heard.peak)

    async def _send(self, call: LiveCall, text: str, final: bool, end: bool = False) -> bool:
        """Publish a change of the call's text; True when something was sent."""
        text = mask_text(words_only(text))
        if not end and (not text or (text == call.last and not final)):
            return False
        call.last = "" if final else text
        try:
            await self.publish(TOPIC, {"call_id": call.call_id, "speaker": call.speaker, "text": text,
                                       "final": final, "end": end})
        except Exception:  # the bus away: the agent misses a partial, the call is not touched
            log.warning("audiosocket %s: partial not published", call.call_id, exc_info=True)
            return False
        return True
