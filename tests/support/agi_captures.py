"""Replaying real Asterisk 22 FastAGI captures (tests/data/asterisk-captures, framed format).

Framed format: a header ``@@ <dir> <HH:MM:SS.mmm> <nbytes>[ conn=N]``, exactly ``nbytes`` raw
bytes (one recv/send), then one ``\\n``. ``A>S`` is Asterisk to the AGI server, ``S>A`` back.
``CaptureReplay`` plays Asterisk's side of one connection against a live server, byte for
byte and chunk for chunk, and checks the server sends what the recorded server sent.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

_HEADER = re.compile(rb"^@@ (A>S|S>A) (\S+) (\d+)(?: conn=(\d+))?\n")


@dataclass(frozen=True)
class Frame:
    direction: str  # "A>S" or "S>A"
    conn: int
    data: bytes


def read_frames(path: Path) -> list[Frame]:
    raw = path.read_bytes()
    frames: list[Frame] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        if end < 0:
            break
        line = raw[pos : end + 1]
        m = _HEADER.match(line)
        if m is None:  # "## " notes and blank lines
            pos = end + 1
            continue
        size = int(m[3])
        start = end + 1
        frames.append(Frame(m[1].decode(), int(m[4] or 0), raw[start : start + size]))
        pos = start + size + 1  # the separator newline
    return frames


def connections(path: Path) -> dict[int, list[Frame]]:
    out: dict[int, list[Frame]] = {}
    for frame in read_frames(path):
        out.setdefault(frame.conn, []).append(frame)
    return out


def commands(frames: list[Frame]) -> list[str]:
    """The commands the recorded server sent (S>A frames), without the newline."""
    return [f.data.decode().rstrip("\n") for f in frames if f.direction == "S>A"]


class CaptureMismatch(AssertionError):
    pass


class CaptureReplay:
    """Asterisk's side of one recorded connection, replayed against ``host:port``."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.received: list[bytes] = []

    async def run(self, host: str, port: int, timeout: float = 10.0) -> list[bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            async with asyncio.timeout(timeout):
                for frame in self.frames:
                    if frame.direction == "A>S":
                        writer.write(frame.data)
                        await writer.drain()
                        await asyncio.sleep(0)  # keep the chunk boundaries Asterisk had
                        continue
                    got = await reader.readexactly(len(frame.data))
                    self.received.append(got)
                    if got != frame.data:
                        raise CaptureMismatch(f"server sent {got!r}, Asterisk's peer had sent {frame.data!r}")
        finally:
            writer.close()
        return self.received
