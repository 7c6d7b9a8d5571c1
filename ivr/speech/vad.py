"""Voice activity per channel: where a channel carries speech, so vosk decodes only that.

WebRTC's VAD (PyPI ``webrtcvad-wheels``, a maintained build of Google's detector) classifies
30 ms frames of 8 kHz audio; runs of speech closer than ``min_gap`` are joined and padded so
no word onset or tail is cut. In a two-channel call each side is silent while the other talks
(about half the call), which is what skipping saves. The times are the recording's own.
"""

from __future__ import annotations

FRAME_MS = 30


def speech_regions(pcm: bytes, rate: int, aggressiveness: int = 2, min_gap: float = 0.6,
                   pad: float = 0.3, min_speech: float = 0.12) -> list[tuple[float, float]]:
    """(start, end) seconds of speech in 16-bit mono ``pcm`` at ``rate`` (8/16/32/48 kHz).

    A region needs ``min_speech`` seconds of voiced frames, so a click or a line hit does
    not wake the recognizer.
    """
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    frame = rate * FRAME_MS // 1000 * 2
    step = FRAME_MS / 1000
    duration = len(pcm) / 2 / rate
    regions: list[list[float]] = []  # [start, end, voiced seconds]
    for i in range(0, len(pcm) - frame + 1, frame):
        if not vad.is_speech(pcm[i : i + frame], rate):
            continue
        start = i / 2 / rate
        if regions and start - regions[-1][1] <= min_gap:
            regions[-1][1] = start + step
            regions[-1][2] += step
        else:
            regions.append([start, start + step, step])
    return [(max(0.0, a - pad), min(duration, b + pad)) for a, b, voiced in regions if voiced >= min_speech]
