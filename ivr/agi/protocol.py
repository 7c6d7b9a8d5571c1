"""The AGI wire protocol as Asterisk 22 speaks it (FastAGI and process AGI share it).

Asterisk sends an environment block (``agi_key: value`` lines, a blank line ends it; it may
arrive in several TCP chunks), then answers each command with one line
``200 result=N[ (data)][ endpos=N]``. The surprises this layer absorbs (see
tests/data/asterisk-captures/README.md):

- a bare ``HANGUP`` line, sent unsolicited when the caller hangs up, ahead of any reply;
- ``100 result=0 Trying...`` before the real reply of a long EXEC (older versions);
- ``511`` for channel commands on a dead channel (GET/SET VARIABLE and VERBOSE still work);
- ``520-`` multi-line usage replies ending with ``520 End of proper usage.``;
- UTF-8 text (decoded leniently: a broken byte must not kill a call);
- a socket closed before the blank line that ends the environment, or mid-call;
- a peer that goes silent (every read has a deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import cast

from ivr.agi.wire import agi_arg, agi_line
from ivr.observe import AGI_COMMAND_SECONDS, agi_verb

# One reply: code, result, optional "(data)" and the rest (endpos=..., etc.).
# Codes are 100-999 in ASCII digits ("\d" alone would take "000" or another script's digits).
_REPLY = re.compile(r"^([1-9]\d\d)(?: result=(-?[0-9*#A-D]*))?(?: \((.*)\))?(?: endpos=(-?\d+))?(.*)$", re.S | re.ASCII)
_PLAIN_RESULT = frozenset("-0123456789*#ABCD")
MAX_LINE = 64 * 1024
MAX_QUEUED = 64  # lines read ahead of the handler before the socket stops being read


class AgiError(Exception):
    """The peer broke the protocol or went away; the call's handler ends."""


class AgiDisconnected(AgiError):
    """The socket closed (before the environment ended, or mid-call)."""


class AgiTimeout(AgiError):
    """The peer sent nothing within the deadline."""


@dataclass(frozen=True, slots=True)
class AgiReply:
    code: int
    result: str = ""
    data: str | None = None
    endpos: int | None = None
    extra: str = ""  # the usage text of a 520, or anything after the known fields

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def value(self) -> int:
        """``result`` as a number; an empty result (GET DATA timeout) counts as 0."""
        try:
            return int(self.result)
        except ValueError:
            return 0


_COMMON: dict[str, AgiReply] = {}  # "200 result=0", "200 result=49"...: a few dozen lines


def parse_reply(line: str) -> AgiReply:
    reply = _COMMON.get(line)
    if reply is not None:
        return reply
    if line.startswith("200 result=") and _PLAIN_RESULT.issuperset(line[11:]):  # the common case
        reply = AgiReply(200, line[11:])
        if len(_COMMON) < 256:  # replies are frozen: one object serves every call
            _COMMON[line] = reply
        return reply
    m = _REPLY.match(line)
    if not m:
        raise AgiError(f"unexpected reply from Asterisk: {line[:200]!r}")
    code, result, data, endpos, rest = m.groups()
    return AgiReply(int(code), result or "", data, int(endpos) if endpos else None, rest.strip())


# An argument for an AGI command: quoted and escaped as res_agi.c reads it; CR/LF/NUL refused.
quote = agi_arg


class AgiStream(asyncio.Protocol):
    """One FastAGI connection: command lines out, reply lines in.

    An ``asyncio.Protocol`` rather than a StreamReader with a timer per read: lines are split
    as bytes arrive and handed to the one coroutine waiting for them, and deadlines are kept
    as a number that the server's ``Watchdog`` checks a few times a second. Both matter when a
    thousand calls each exchange a line every few milliseconds.
    """

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.hung_up = False  # Asterisk told us the caller hung up (HANGUP line, 511)
        self.env: dict[str, str] = {}
        self.transport: asyncio.Transport | None = None
        self.deadline = 0.0  # loop time by which the awaited line must arrive (0: not waiting)
        self._lines: deque[bytes] = deque()
        self._buffer = b""
        self._waiter: asyncio.Future[bytes] | None = None
        self._ended: AgiError | None = None  # the connection is gone (or broke the protocol)
        self._paused = False
        self._waited = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        *lines, self._buffer = buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            self._end(AgiError("line too long"))
            return
        self._lines.extend(lines)
        if b"HANGUP" in buffer and any(line.rstrip(b"\r") == b"HANGUP" for line in lines):
            self.hung_up = True  # known now, even if the connection closes before it is read
        if len(self._lines) > MAX_QUEUED and self.transport is not None and not self._paused:
            self._paused = True  # a peer that floods lines waits until we read them
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(AgiDisconnected(f"connection lost: {exc}" if exc else "Asterisk closed the connection"))

    def _end(self, error: AgiError) -> None:
        if self._ended is None:
            self._ended = error
        if self.transport is not None and not isinstance(error, AgiDisconnected):
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._lines:
            waiter.set_result(self._lines.popleft())
        elif self._ended is not None:
            waiter.set_exception(self._ended)
        else:
            return
        self._waiter = None
        self.deadline = 0.0

    def expire(self, now: float) -> None:
        """Called by the watchdog: the awaited line is overdue."""
        waiter = self._waiter
        if waiter is not None and not waiter.done() and 0.0 < self.deadline <= now:
            self._waiter = None
            self.deadline = 0.0
            waiter.set_exception(AgiTimeout(f"no data from Asterisk within {self._waited:g} s"))

    # -- reading and writing ------------------------------------------------------------

    def _next(self, timeout: float) -> bytes | asyncio.Future[bytes]:
        """The next line if it has arrived, else a future of it (no coroutine per line)."""
        if self._paused and len(self._lines) <= MAX_QUEUED // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if self._lines:
            return self._lines.popleft()
        if self._ended is not None:
            raise self._ended
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._waited = timeout
        self.deadline = loop.time() + timeout
        return self._waiter

    async def _line(self, timeout: float) -> str:
        raw = self._next(timeout)
        if not isinstance(raw, bytes):
            raw = await raw
        return raw.decode("utf-8", "replace").rstrip("\r")

    async def read_env(self, timeout: float) -> dict[str, str]:
        """The environment block; a socket closed before its blank line raises AgiDisconnected."""
        env: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._lines:  # what has arrived is parsed without a round through the loop
                line = self._lines.popleft().decode("utf-8", "replace").rstrip("\r")
            else:
                line = await self._line(max(deadline - loop.time(), 0.001))
            if not line:
                break
            key, sep, value = line.partition(":")
            if sep:
                env[key.strip()] = value.strip()
        self.env = env
        return env

    async def command(self, text: str) -> AgiReply:
        """Send one command line and return its reply, timed (``dasan_agi_command_seconds``)."""
        started = time.perf_counter()
        try:
            return await self._command(text)
        finally:
            AGI_COMMAND_SECONDS.labels(agi_verb(text)).observe(time.perf_counter() - started)

    async def _command(self, text: str) -> AgiReply:
        """Send one command line and return its reply (HANGUP and 100 lines absorbed)."""
        transport = self.transport
        if self._ended is not None or transport is None or transport.is_closing():
            raise self._ended or AgiDisconnected("connection closed")
        transport.write(agi_line(text).encode() + b"\n")  # a line break would be a second command
        while True:
            raw = self._next(self.timeout)
            if not isinstance(raw, bytes):
                raw = await raw
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if line == "HANGUP":
                self.hung_up = True
                continue
            if not line:
                continue
            if line.startswith("520-"):
                usage = []
                while True:
                    more = await self._line(self.timeout)
                    if more.startswith("520 "):
                        break
                    usage.append(more)
                return AgiReply(520, extra="\n".join(usage))
            reply = parse_reply(line)
            if reply.code == 100:  # "Trying...": the real reply follows
                continue
            if reply.code == 511:
                self.hung_up = True
            return reply

    async def close(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()


class Watchdog:
    """Deadlines for every open connection, checked ``tick`` seconds apart by one task."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.streams: set[AgiStream] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for stream in [s for s in self.streams if 0.0 < s.deadline <= now]:
                stream.expire(now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
