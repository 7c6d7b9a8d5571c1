"""A lean HTTP/1.1 load generator: keep-alive connections as ``asyncio.Protocol`` callbacks.

On a 2-core machine the client's CPU is taken from the server it measures: aiohttp's client
costs about half a millisecond per request, as much as the webhook it posts. This one only
writes the request bytes it is given and reads ``Content-Length`` framed responses (what
aiohttp's server answers), so nearly all the machine is left to the server. Latency is taken
per request from the write to the last byte of the response.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# A request as bytes: the load generator asks for a new one for each send.
MakeRequest = Callable[[], bytes]


@dataclass
class LoadStats:
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.failed += 1
        if len(self.errors) < 3:
            self.errors.append(text)


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending requests back to back until ``stop_at``."""

    def __init__(self, make: MakeRequest, stop_at: float, stats: LoadStats, done: asyncio.Future[None]) -> None:
        self.make, self.stop_at, self.stats, self.done = make, stop_at, stats, done
        self.buffer = b""
        self.sent_at = 0.0
        self.waiting = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.monotonic() >= self.stop_at:
            self.transport.close()
            return
        self.waiting = True
        self.sent_at = time.monotonic()
        self.transport.write(self.make())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.waiting:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.waiting = False
            self.stats.latencies.append(time.monotonic() - self.sent_at)
            status = int(head[9:12]) if head.startswith("HTTP/1.") else 0
            if status == 200:
                self.stats.ok += 1
            else:
                self.stats.error(f"HTTP {status}")
            if "connection: close" in head.lower():
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:  # the server went away with a request open
            self.stats.latencies.append(time.monotonic() - self.sent_at)
            self.stats.error(f"connection lost: {exc}")
        if not self.done.done():
            self.done.set_result(None)


async def post_for(host: str, port: int, make: MakeRequest, seconds: float, connections: int) -> LoadStats:
    """``connections`` keep-alive connections, each with one request in flight, for ``seconds``;
    a connection the server closes is opened again until the time is up."""
    loop = asyncio.get_running_loop()
    stats = LoadStats()
    stop_at = time.monotonic() + seconds

    async def lane() -> None:
        while time.monotonic() < stop_at:
            done: asyncio.Future[None] = loop.create_future()
            try:
                await loop.create_connection(functools.partial(_Connection, make, stop_at, stats, done), host, port)
            except OSError as exc:
                stats.error(f"connect: {exc}")
                await asyncio.sleep(0.05)
                continue
            await done

    await asyncio.gather(*(lane() for _ in range(connections)))
    return stats


def request_bytes(method: str, host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 request with a keep-alive connection and a Content-Length body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
