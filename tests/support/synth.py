"""Telephone-like test audio from text: espeak-ng speech, resampled by sox to 8 kHz.

Used by the tests and the benchmark to make real speech files at run time (nothing is
checked in): Korean sentences at known places in a recording, mono or with caller and agent
on their own stereo channels, as mu-law or 16-bit PCM WAV or headerless ``.ulaw``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def available() -> str | None:
    """None when espeak-ng and sox are installed, else what is missing."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    return f"needs {' and '.join(missing)} (apt-get install {' '.join(missing)})" if missing else None


# sox dithers whenever it resamples or mixes down to 16 bits, and seeds the dither from the
# clock: the same text gave different samples on every run, so vosk heard a slightly different
# clip each time (the cause of speech tests that failed once in a while). ``-R`` (repeatable)
# seeds it with a fixed number: the same text is the same bytes on every run and machine.
SOX = ["sox", "-R"]


def _run(cmd: list[str]) -> None:
    if cmd[0] == "sox":
        cmd = [*SOX, *cmd[1:]]
    subprocess.run(cmd, check=True, capture_output=True)


def speech(text: str, out: Path, voice: str = "ko", speed: int = 120) -> Path:
    """espeak-ng's rendering of ``text`` as 8 kHz mono 16-bit WAV."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text])
        _run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out)])
    return out


def placed(parts: Sequence[tuple[float, str]], out: Path, total: float, voice: str = "ko") -> Path:
    """A mono 8 kHz WAV of ``total`` seconds with each text spoken starting at its offset."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs: list[str] = []
        for i, (offset, text) in enumerate(parts):
            clip = speech(text, Path(tmp) / f"c{i}.wav", voice)
            shifted = Path(tmp) / f"s{i}.wav"
            _run(["sox", str(clip), str(shifted), "pad", f"{offset}", "0", "trim", "0", f"{total}", "pad", "0",
                  f"{total}", "trim", "0", f"{total}"])
            inputs.append(str(shifted))
        if len(inputs) == 1:
            shutil.copyfile(inputs[0], out)
        else:
            _run(["sox", "-m", *inputs, str(out)])
    return out


def stereo(left: Path, right: Path, out: Path) -> Path:
    """Two mono files as the left (caller) and right (agent) channels of one file."""
    _run(["sox", "-M", str(left), str(right), str(out)])
    return out


def encode(src: Path, out: Path, encoding: str = "mu-law") -> Path:
    """Re-encode at 8 kHz: ``mu-law``/``a-law`` WAV, ``pcm`` WAV, or headerless by out's suffix."""
    if out.suffix in (".ulaw", ".ul"):
        _run(["sox", str(src), "-r", "8000", "-e", "mu-law", "-t", "raw", str(out)])
    elif out.suffix in (".alaw", ".al"):
        _run(["sox", str(src), "-r", "8000", "-e", "a-law", "-t", "raw", str(out)])
    elif encoding == "pcm":
        _run(["sox", str(src), "-r", "8000", "-e", "signed-integer", "-b", "16", str(out)])
    else:
        _run(["sox", str(src), "-r", "8000", "-e", encoding, "-b", "8", str(out)])
    return out
