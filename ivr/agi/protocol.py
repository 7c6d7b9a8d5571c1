"""The AGI wire protocol as Asterisk 22 speaks it (FastAGI and process AGI share it).

Asterisk sends an environment block (``agi_key: value`` lines, a blank line ends it; it may
arrive in several TCP chunks), then answers each command with one line
``200 result=N[ (data)][ endpos=N]``. The surprises this layer absorbs (see
../shared/asterisk-captures/README.md):

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
import re
from dataclasses import dataclass

# One reply: code, result, optional "(data)" and the rest (endpos=..., etc.).
_REPLY = re.compile(r"^(\d{3})(?: result=(-?[0-9*#A-D]*))?(?: \((.*)\))?(?: endpos=(-?\d+))?(.*)$", re.S)
MAX_LINE = 64 * 1024


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


def parse_reply(line: str) -> AgiReply:
    m = _REPLY.match(line)
    if not m:
        raise AgiError(f"unexpected reply from Asterisk: {line[:200]!r}")
    code, result, data, endpos, rest = m.groups()
    return AgiReply(int(code), result or "", data, int(endpos) if endpos else None, rest.strip())


def quote(arg: str) -> str:
    """An argument for an AGI command: quoted, with quotes and backslashes escaped, one line."""
    clean = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return f'"{clean}"'


class AgiStream:
    """Commands and replies over an asyncio stream pair, each read under a deadline."""

    __slots__ = ("env", "hung_up", "reader", "timeout", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float = 30.0) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.hung_up = False  # Asterisk told us the caller hung up (HANGUP line, 511)
        self.env: dict[str, str] = {}

    async def _line(self, timeout: float) -> str:
        try:
            async with asyncio.timeout(timeout):
                raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise AgiDisconnected("Asterisk closed the connection") from None
        except asyncio.LimitOverrunError:
            raise AgiError("line too long") from None
        except TimeoutError:
            raise AgiTimeout(f"no data from Asterisk within {timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise AgiDisconnected(f"connection lost: {exc}") from None
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def read_env(self, timeout: float) -> dict[str, str]:
        """The environment block; a socket closed before its blank line raises AgiDisconnected."""
        env: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            line = await self._line(max(deadline - loop.time(), 0.001))
            if not line:
                break
            key, sep, value = line.partition(":")
            if sep:
                env[key.strip()] = value.strip()
        self.env = env
        return env

    async def command(self, text: str) -> AgiReply:
        """Send one command line and return its reply (HANGUP and 100 lines absorbed)."""
        try:
            self.writer.write(text.encode() + b"\n")
        except (ConnectionError, RuntimeError) as exc:
            raise AgiDisconnected(f"connection lost: {exc}") from None
        while True:
            line = await self._line(self.timeout)
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
        writer = self.writer
        if writer.is_closing():
            return
        writer.close()
        try:
            async with asyncio.timeout(1):
                await writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            pass
