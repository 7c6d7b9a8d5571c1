"""Reading telephone recordings into 16-bit PCM per channel, with clear errors for bad files.

Asterisk writes WAV (16-bit PCM, 8 kHz, from MixMonitor), G.711 WAV (mu-law/A-law, format
tags 7/6) and headerless ``.ulaw``/``.alaw``/``.sln`` files. Python's ``wave`` module reads
only PCM, and pydub's ``from_file`` ignores the frame rate of a headerless file, so the RIFF
chunks are parsed here and G.711 is expanded with ``audioop`` at the rate the format implies.

Every problem raises ``AudioError`` whose message says what is wrong (empty, truncated, not
audio, unsupported encoding), so the record of a failed transcription explains itself.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # audioop is stdlib up to 3.12 (deprecated) and the audioop-lts package from 3.13.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

# Headerless formats Asterisk writes: extension -> (encoding, sample rate).
HEADERLESS: dict[str, tuple[str, int]] = {
    ".ulaw": ("mulaw", 8000), ".ul": ("mulaw", 8000), ".mulaw": ("mulaw", 8000), ".pcm": ("mulaw", 8000),
    ".alaw": ("alaw", 8000), ".al": ("alaw", 8000),
    ".sln": ("pcm16", 8000), ".raw": ("pcm16", 8000), ".sln16": ("pcm16", 16000),
}
WAV_PCM, WAV_ALAW, WAV_MULAW, WAV_EXTENSIBLE = 1, 6, 7, 0xFFFE
# MixMonitor(<name>.stereo.sln,D): the channel's audio (caller) and the audio sent to it (agent)
# interleaved as 16-bit 8 kHz samples. Its WAV header would say one channel (D does not fix it),
# so the dialplan records raw slin and the channel count comes from this name, not a header.
STEREO_SLN = ".stereo.sln"


class AudioError(ValueError):
    """The file cannot be read as telephone audio; the message says why."""


@dataclass
class Audio:
    format: str  # wav/pcm16, wav/mulaw, ulaw, ...
    sample_rate: int
    channels: list[bytes]  # 16-bit signed little-endian PCM, one buffer per channel

    @property
    def duration(self) -> float:
        return len(self.channels[0]) / 2 / self.sample_rate if self.channels else 0.0


def _expand(data: bytes, encoding: str, bits: int = 16) -> bytes:
    if encoding == "mulaw":
        return audioop.ulaw2lin(data, 2)
    if encoding == "alaw":
        return audioop.alaw2lin(data, 2)
    if bits == 8:  # WAV 8-bit PCM is unsigned
        return audioop.lin2lin(audioop.bias(data, 1, -128), 1, 2)
    if bits == 24:
        return audioop.lin2lin(data, 3, 2)
    if bits == 32:
        return audioop.lin2lin(data, 4, 2)
    return data


def _split_channels(pcm: bytes, channels: int) -> list[bytes]:
    if channels == 1:
        return [pcm]
    if channels == 2:
        return [audioop.tomono(pcm, 2, 1, 0), audioop.tomono(pcm, 2, 0, 1)]
    frame = 2 * channels
    return [b"".join(pcm[i + 2 * c : i + 2 * c + 2] for i in range(0, len(pcm), frame))
            for c in range(channels)]


def _parse_wav(raw: bytes) -> Audio:
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise AudioError(f"not a WAV file (starts with {raw[:12]!r}) / WAV 파일이 아닙니다")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        body_start = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body_start + 16 > len(raw):
                raise AudioError("corrupt WAV: fmt chunk too short / WAV 형식 정보가 손상되었습니다")
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", raw[body_start : body_start + 16])
            if tag == WAV_EXTENSIBLE and size >= 40:
                tag = struct.unpack("<H", raw[body_start + 24 : body_start + 26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError("corrupt WAV: data before fmt chunk / WAV 형식 정보가 없습니다")
            tag, channels, rate, bits = fmt
            data = raw[body_start : body_start + size]
            # Asterisk writes 0 or 0xFFFFFFFF while still recording; a real shortfall is truncation.
            if len(data) < size and size not in (0, 0xFFFFFFFF):
                raise AudioError(
                    f"truncated: header announces {size} bytes of audio, file has {len(data)} "
                    "/ 파일이 잘렸습니다")
            if size in (0, 0xFFFFFFFF):
                data = raw[body_start:]
            return _decode_wav_data(data, tag, channels, rate, bits)
        pos = body_start + size + (size & 1)
    if fmt is None:
        raise AudioError("corrupt WAV: no fmt chunk / WAV 형식 정보가 없습니다")
    raise AudioError("truncated: WAV has no data chunk / 오디오 데이터가 없습니다")


def _decode_wav_data(data: bytes, tag: int, channels: int, rate: int, bits: int) -> Audio:
    if channels < 1 or channels > 8 or rate < 4000 or rate > 192000:
        raise AudioError(f"corrupt WAV: {channels} channels at {rate} Hz / WAV 형식 정보가 잘못되었습니다")
    if tag in (WAV_MULAW, WAV_ALAW):
        encoding, width = ("mulaw" if tag == WAV_MULAW else "alaw"), 1
    elif tag == WAV_PCM and bits in (8, 16, 24, 32):
        encoding, width = f"pcm{bits}", bits // 8
    else:
        raise AudioError(f"unsupported WAV encoding (format tag {tag}, {bits} bits) / 지원하지 않는 인코딩입니다")
    frame = width * channels
    usable = len(data) - len(data) % frame
    if usable == 0:
        raise AudioError("empty: the recording holds no audio / 녹음에 소리가 없습니다")
    pcm = _expand(data[:usable], encoding, bits)
    return Audio(f"wav/{encoding}", rate, _split_channels(pcm, channels))


def decode(path: str | Path) -> Audio:
    """Read a recording; raises ``AudioError`` (or ``FileNotFoundError``) with the reason."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise AudioError("empty file (0 bytes) / 빈 파일입니다")
    suffix = path.suffix.lower()
    if path.name.lower().endswith(STEREO_SLN):
        if raw[:4] == b"RIFF":
            raise AudioError("wrong format: .stereo.sln file holds a WAV header / 확장자와 형식이 다릅니다")
        usable = raw[: len(raw) - len(raw) % 4]
        if not usable:
            raise AudioError("empty: the recording holds no audio / 녹음에 소리가 없습니다")
        return Audio("sln/stereo", 8000, _split_channels(usable, 2))
    if suffix in HEADERLESS:
        if raw[:4] == b"RIFF":
            raise AudioError(f"wrong format: {suffix} file holds a WAV header / 확장자와 형식이 다릅니다")
        encoding, rate = HEADERLESS[suffix]
        if encoding == "pcm16":
            raw = raw[: len(raw) - len(raw) % 2]
        return Audio(suffix.lstrip("."), rate, [_expand(raw, encoding)])
    if suffix in (".wav", ".wav49", ".wave", ""):
        return _parse_wav(raw)
    raise AudioError(f"unsupported recording format {suffix!r} (expected .wav, .ulaw, .alaw, .sln) "
                     "/ 지원하지 않는 녹음 형식입니다")


def recording_suffix(name: str) -> str:
    """The format part of a recording's file name: ``.stereo.sln`` or the last suffix."""
    lower = name.lower()
    return STEREO_SLN if lower.endswith(STEREO_SLN) else Path(lower).suffix


def recording_stem(name: str) -> str:
    """The call id part of a recording's file name (``<linkedid>.stereo.sln`` -> linkedid)."""
    base = Path(name).name
    return base[: -len(recording_suffix(base))] if recording_suffix(base) else base


def wav_header(channels: int, rate: int, data_bytes: int) -> bytes:
    """A 16-bit PCM WAV header, for serving raw slin (e.g. ``.stereo.sln``) to a browser."""
    align = 2 * channels
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, WAV_PCM, channels, rate, rate * align, align, 16) +
            b"data" + struct.pack("<I", data_bytes))


def resample(pcm: bytes, rate: int, target: int) -> bytes:
    """16-bit mono PCM from ``rate`` to ``target`` Hz (audioop's filtered linear interpolation)."""
    if rate == target:
        return pcm
    return audioop.ratecv(pcm, 2, 1, rate, target, None)[0]


def mixdown(channels: list[bytes]) -> bytes:
    """All channels summed into one (for a mono transcript of a multi-channel file)."""
    mixed = channels[0]
    for other in channels[1:]:
        n = min(len(mixed), len(other))
        mixed = audioop.add(mixed[:n], other[:n], 2)
    return mixed


def rms(pcm: bytes) -> int:
    return int(audioop.rms(pcm, 2)) if pcm else 0
