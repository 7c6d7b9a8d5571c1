"""Test kit for browser calls: fake camera and microphone files for Chromium, and its flags.

Chromium plays a .y4m file as the camera and a .wav as the microphone
(``--use-file-for-fake-video-capture``/``--use-file-for-fake-audio-capture``); ffmpeg makes
both: a moving test pattern (so the encoder sends real frames) and a tone.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


@dataclass(frozen=True)
class FakeMedia:
    video: Path
    audio: Path

    def chromium_args(self) -> list[str]:
        return [*BASE_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={self.video}",
                f"--use-file-for-fake-audio-capture={self.audio}"]


def make_fake_media(folder: Path, seconds: int = 4) -> FakeMedia:
    folder.mkdir(parents=True, exist_ok=True)
    video, audio = folder / "camera.y4m", folder / "microphone.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=640x480:rate=15:duration={seconds}", "-pix_fmt", "yuv420p", str(video)], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-ac", "1", str(audio)], check=True)
    return FakeMedia(video, audio)
