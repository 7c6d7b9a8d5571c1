"""A scripted caller that speaks AGI over TCP exactly as Asterisk 22 does.

It connects to a FastAGI server, sends the environment block in two TCP chunks (as the
captures show), then answers each command with Asterisk's replies, pressing keys from a
script. Script tokens (space separated), each used by the next command that plays or waits:

- ``1``, ``9``, ``0123456789#``: keys pressed (during a prompt if they are escape digits, or
  at a GET DATA); ``#`` ends a multi-digit entry;
- ``T``: no key (GET DATA times out: ``200 result= (timeout)``);
- ``H``: the caller hangs up during this command (``200 result=-1``; afterwards an unsolicited
  ``HANGUP`` line and ``511`` for channel commands, as Asterisk does);
- ``S``: the caller's side goes silent (no reply at all), to test per-call timeouts;
- ``X``: the socket closes abruptly.

When the script runs out the caller hangs up (``then="hangup"``) or stays silent on keys
(``then="timeout"``). Everything heard is logged (``CallLog``), for tests and ``dasan call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections import deque
from dataclasses import dataclass, field

from ivr.agi.wire import parse_args

DEAD = b"511 Command Not Permitted on a dead channel or intercept routine\n"
# Commands Asterisk still runs on a dead channel (res_agi "dead" flag).
DEAD_OK = ("GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE")
_VAR = re.compile(r"\$\{([^}]*)\}")
_EPOCH = int(time.time())
_SEQUENCE = itertools.count(1)


def split_args(text: str) -> list[str]:
    """The arguments as Asterisk reads them (res_agi.c parse_args)."""
    return parse_args(text)


def environment(route: str = "main", language: str = "ko", callerid: str = "01012345678",
                uniqueid: str = "1795593239.17", channel: str = "PJSIP/caller-0000000f",
                host: str = "127.0.0.1:4573") -> list[bytes]:
    """The environment block in the two chunks Asterisk 22 sends (fastagi-env capture)."""
    first = (
        f"agi_network: yes\nagi_network_script: {route}\nagi_request: agi://{host}/{route}\n"
        f"agi_channel: {channel}\nagi_language: {language}\nagi_type: PJSIP\nagi_uniqueid: {uniqueid}\n"
        f"agi_version: 22-git-69535d4837\nagi_callerid: {callerid}\nagi_calleridname: {callerid}\n"
        "agi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 120\n"
        "agi_rdnis: unknown\nagi_context: from-caller\n"
    )
    second = (
        "agi_extension: 120\nagi_priority: 4\nagi_enhanced: 0.0\nagi_accountcode: \n"
        "agi_threadid: 140208381900480\n\n"
    )
    return [first.encode(), second.encode()]


@dataclass
class CallLog:
    heard: list[str] = field(default_factory=list)  # sound names, "digits:123", "alpha:AB"
    heard_language: list[str] = field(default_factory=list)  # CHANNEL(language) at that moment
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    hung_up: bool = False  # the caller hung up
    closed_by_server: bool = False
    agi_hangup: bool = False  # the server sent HANGUP


class ScriptedCaller:
    def __init__(self, script: str = "", *, route: str = "main", language: str = "ko",
                 callerid: str = "01012345678", linkedid: str | None = None,
                 variables: dict[str, str] | None = None, then: str = "hangup", trying: bool = False,
                 env_chunks: list[bytes] | None = None, delay: float = 0.0,
                 missing: set[str] | None = None) -> None:
        self.tokens: deque[str] = deque(script.split())
        self.then = then
        self.delay = delay  # seconds before each reply (a slow channel)
        # sound files that do not exist: STREAM FILE and GET DATA answer -1 at once (Asterisk 22)
        self.missing = missing or set()
        self.trying = trying  # send "100 result=0 Trying..." before EXEC replies (older Asterisk)
        linkedid = linkedid or f"{_EPOCH}.{next(_SEQUENCE)}"  # unique per call, like Asterisk's
        self.env_chunks = env_chunks or environment(route, language, callerid, linkedid)
        self.log = CallLog()
        self.log.variables.update({"CHANNEL(language)": language, "CHANNEL(linkedid)": linkedid,
                                   "CALLERID(num)": callerid})
        self.log.variables.update(variables or {})
        self.dead = False
        self.hangup_sent = False
        self.silent = False

    # -- the keys ------------------------------------------------------------------------

    def _next(self) -> str | None:
        if self.tokens:
            return self.tokens[0]
        return "H" if self.then == "hangup" else "T"

    def _take_key(self, allowed: str) -> str:
        """One key pressed during a prompt, if the next token starts with an allowed key."""
        token = self._next()
        if token and token[0] in allowed and token not in ("H", "T", "S", "X") and self.tokens:
            rest = token[1:]
            if rest:
                self.tokens[0] = rest
            else:
                self.tokens.popleft()
            return token[0]
        return ""

    def _control(self, waits_for_input: bool) -> str | None:
        """H / S / X at the head of the script (consumed), else None.

        Once the script has run out the caller hangs up only where a key is expected."""
        if not self.tokens and not waits_for_input:
            return None
        token = self._next()
        if token in ("H", "S", "X"):
            if self.tokens:
                self.tokens.popleft()
            return token
        return None

    def _heard(self, sound: str) -> None:
        self.log.heard.append(sound)
        self.log.heard_language.append(self.log.variables.get("CHANNEL(language)", ""))

    # -- replies -------------------------------------------------------------------------

    def _reply(self, cmd: str) -> bytes | str | None:
        """Asterisk's reply; None: say nothing (silent caller); "close": drop the socket."""
        words = cmd.split(" ", 3)
        upper = cmd.upper()
        is_dead_ok = upper.startswith(DEAD_OK)
        if self.dead and not is_dead_ok:
            return DEAD
        if upper.startswith("ANSWER"):
            return b"200 result=0\n"
        if upper.startswith(("STREAM FILE", "SAY DIGITS", "SAY ALPHA", "GET DATA", "WAIT FOR DIGIT", "EXEC")):
            args = split_args(cmd)[2:]
            if upper.startswith("GET DATA") and not args:
                return (b"520-Invalid command syntax.  Proper usage follows:\n"
                        b"Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
                        b"520 End of proper usage.\n")
            if upper.startswith(("STREAM FILE", "GET DATA")) and args:
                self._heard(args[0])
            elif upper.startswith("SAY") and args:
                self._heard(f"{words[1].lower()}:{args[0]}")
            if upper.startswith(("STREAM FILE", "GET DATA")) and args and args[0] in self.missing:
                return b"200 result=-1 endpos=0\n" if upper.startswith("STREAM FILE") else b"200 result=-1\n"
            waits = upper.startswith(("GET DATA", "WAIT FOR DIGIT")) or (
                upper.startswith("STREAM FILE") and len(args) > 1 and args[1] != "")
            control = self._control(waits)
            if control == "S":
                self.silent = True
                return None
            if control == "X":
                return "close"
            if control == "H":
                self.dead = True
                self.log.hung_up = True
                return b"200 result=-1 endpos=2400\n" if upper.startswith("STREAM FILE") else b"200 result=-1\n"
        if upper.startswith("STREAM FILE"):
            key = self._take_key(args[1] if len(args) > 1 else "")
            return f"200 result={ord(key) if key else 0} endpos={'1200' if key else '8000'}\n".encode()
        if upper.startswith("SAY DIGITS") or upper.startswith("SAY ALPHA"):
            return b"200 result=0\n"
        if upper.startswith("GET DATA"):
            max_digits = int(args[2]) if len(args) > 2 else 1024
            token = self._next()
            if token == "T" or not token:
                if self.tokens:
                    self.tokens.popleft()
                return b"200 result= (timeout)\n"
            self.tokens.popleft()
            digits, rest, ended = "", token, False
            while rest and len(digits) < max_digits:
                key, rest = rest[0], rest[1:]
                if key == "#":
                    ended = True
                    break
                digits += key
            if rest:
                self.tokens.appendleft(rest)
            full = ended or len(digits) >= max_digits
            return f"200 result={digits}{'' if full else ' (timeout)'}\n".encode()
        if upper.startswith("WAIT FOR DIGIT"):
            key = self._take_key("0123456789*#")
            if not key and self.tokens and self.tokens[0] == "T":
                self.tokens.popleft()
            return f"200 result={ord(key) if key else 0}\n".encode()
        if upper.startswith("EXEC"):
            return (b"100 result=0 Trying...\n200 result=0\n") if self.trying else b"200 result=0\n"
        if upper.startswith("SET VARIABLE"):
            args = split_args(cmd)[2:]
            if len(args) >= 2:
                self.log.variables[args[0]] = args[1]
            return b"200 result=1\n"
        if upper.startswith("GET FULL VARIABLE"):
            expr = cmd[len("GET FULL VARIABLE "):].strip()
            value = _VAR.sub(lambda m: self.log.variables.get(m[1], ""), expr)
            return f"200 result=1 ({value})\n".encode()
        if upper.startswith("GET VARIABLE"):
            name = cmd[len("GET VARIABLE "):].strip()
            if name in self.log.variables:
                return f"200 result=1 ({self.log.variables[name]})\n".encode()
            return b"200 result=0\n"
        if upper.startswith("VERBOSE"):
            return b"200 result=1\n"
        if upper.startswith("CHANNEL STATUS"):
            return b"200 result=6\n"
        if upper.startswith("HANGUP"):
            self.dead = True
            self.log.agi_hangup = True
            return b"200 result=1\n"
        return b"510 Invalid or unknown command\n"

    # -- the call ------------------------------------------------------------------------

    async def call(self, host: str, port: int, timeout: float = 120.0) -> CallLog:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            async with asyncio.timeout(timeout):
                await self.converse(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        return self.log

    async def converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Speak Asterisk's side over any stream pair (a TCP socket, a process AGI's pipes)."""
        for chunk in self.env_chunks:
            writer.write(chunk)
            await writer.drain()
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.log.closed_by_server = True
                return
            cmd = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.commands.append(cmd)
            if self.silent:
                continue
            if self.delay:
                await asyncio.sleep(self.delay)
            was_dead_unannounced = self.dead and not self.hangup_sent
            reply = self._reply(cmd)
            if reply is None:
                continue
            if reply == "close":
                self.log.hung_up = True
                transport = writer.transport
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
                else:
                    writer.close()
                return
            assert isinstance(reply, bytes)
            if was_dead_unannounced:
                # Asterisk's channel watcher writes HANGUP on its own, before the next reply.
                self.hangup_sent = True
                writer.write(b"HANGUP\n")
                await writer.drain()
            writer.write(reply)
            await writer.drain()
            if self.log.agi_hangup:
                writer.write(b"HANGUP\n")
                await writer.drain()
                self.log.closed_by_server = False
                return
