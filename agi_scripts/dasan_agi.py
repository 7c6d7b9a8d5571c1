#!/usr/bin/env python3
"""Process AGI entry point (pyst2): the same IVR menus for small sites without FastAGI.

Dialplan: ``same => n,AGI(/opt/dasan/agi_scripts/dasan_agi.py,main)`` (or ``survey``,
``callback``). Asterisk starts one process per call and speaks AGI over stdin/stdout; the
configuration comes from ``DASAN_CONFIG`` / ``DASAN__...`` as for every dasan command.
pyst2 reads the environment and sends the commands; this file adds what pyst2 lacks for
Asterisk 22: the unsolicited ``HANGUP`` line and ``511`` on a dead channel end the call cleanly
instead of desynchronising the conversation, and arguments are quoted (pyst2 sends an empty
escape-digit list as nothing at all, which shifts the next argument into its place) with
``ivr.agi.wire`` (line breaks refused, as res_agi.c reads quotes and backslashes).
Note: with the in-process bus (``bus.backend: memory``) an SMS night route's job cannot
leave this short-lived process; use the Redis bus with process AGI.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from asterisk.agi import AGI, AGIAppError, AGIException, AGIHangup

from ivr.agi.wire import agi_arg, agi_line, agi_word
from ivr.engine.channel import ChannelHangup


class _PushbackReader:
    """stdin with one line of push-back, so pyst2 reads the real reply after we skip lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pushed: str | None = None

    def readline(self) -> str:
        if self.pushed is not None:
            line, self.pushed = self.pushed, None
            return line
        return self.stream.readline()


class Agi22(AGI):  # type: ignore[misc]
    """pyst2's AGI, aware of Asterisk 22's HANGUP line, 100 Trying and 511."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.reader = _PushbackReader(stdin)
        self.hung_up = False
        super().__init__(stdin=self.reader, stdout=stdout, stderr=open(os.devnull, "w"))

    def send_command(self, command: str, *args: Any) -> None:
        # pyst2 joins the arguments as they are: the line is checked before it is written.
        agi_line(" ".join([command, *map(str, args)]))
        super().send_command(command, *args)

    def get_result(self, stdin: Any = None) -> Any:
        while True:
            line = self.reader.readline()
            if not line:
                raise AGIHangup("Asterisk closed the pipe")
            text = line.strip()
            if text == "HANGUP":
                self.hung_up = True
                continue
            if text.startswith("100 ") or not text:
                continue
            if text.startswith("511"):
                self.hung_up = True
                raise AGIHangup("dead channel (511)")
            self.reader.pushed = line
            return super().get_result()


class PystChannel:
    """``ivr.engine.channel.Channel`` over pyst2 (blocking is fine: one call per process)."""

    def __init__(self, agi: Agi22) -> None:
        self.agi = agi
        self.env: dict[str, str] = agi.env

    def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except AGIHangup as exc:  # includes AGIResultHangup, SIGHUP, SIGPIPE, 511
            raise ChannelHangup(str(exc)) from None

    def _result(self, command: str, *args: str) -> str:
        return str(self._run(lambda: self.agi.execute(command, *args))["result"][0])

    def _media(self, command: str, *args: str) -> str:
        try:
            return self._result(command, *args)
        except AGIAppError:  # result -1: a hang-up, or a missing sound file
            if self.agi.hung_up:
                raise ChannelHangup("caller hung up") from None
            self._result("CHANNEL STATUS")  # raises ChannelHangup on a dead channel
            return "0"

    async def answer(self) -> None:
        self._result("ANSWER")

    async def play(self, prompt: str, escape: str = "") -> str:
        result = self._media("STREAM FILE", agi_arg(prompt), agi_arg(escape))
        return chr(int(result)) if result not in ("", "0") and result.lstrip("-").isdigit() else ""

    async def read_digits(self, prompt: str, timeout: float, max_digits: int) -> str:
        ms = str(int(timeout * 1000))
        try:
            return self._result("GET DATA", agi_arg(prompt or "silence/1"), ms, str(int(max_digits)))
        except AGIAppError:  # -1: a hang-up, or (Asterisk 22) a missing prompt file
            if self.agi.hung_up:
                raise ChannelHangup("caller hung up") from None
            self._result("CHANNEL STATUS")  # raises ChannelHangup on a dead channel
        digits = ""
        while len(digits) < max_digits:
            try:
                code = int(self._result("WAIT FOR DIGIT", ms) or 0)
            except AGIAppError:
                raise ChannelHangup("caller hung up") from None
            if code <= 0 or chr(code) == "#":
                break
            digits += chr(code)
        return digits

    async def say_digits(self, digits: str) -> None:
        clean = "".join(ch for ch in digits if ch.isdigit())
        if clean:
            self._media("SAY DIGITS", clean, '""')

    async def say_alpha(self, text: str) -> None:
        clean = "".join(ch for ch in text if ch.isascii() and ch.isalnum())
        if clean:
            self._media("SAY ALPHA", clean, '""')

    async def set_variable(self, name: str, value: str) -> None:
        self._result("SET VARIABLE", agi_word(name), agi_arg(value))

    async def get_variable(self, name: str) -> str:
        reply = self._run(lambda: self.agi.execute("GET FULL VARIABLE", f"${{{agi_word(name)}}}"))
        code, data = reply["result"]
        return str(data) if code == "1" else ""

    async def hangup(self) -> None:
        self._result("HANGUP")

    async def verbose(self, message: str, level: int = 1) -> None:
        self._result("VERBOSE", agi_arg(" ".join(message.replace("\x00", " ").splitlines())), str(int(level)))


async def run(route: str, channel: PystChannel) -> int:
    from ivr import datafolder
    from ivr.config import load_settings
    from ivr.context import AppContext
    from ivr.engine.runtime import IvrRuntime

    settings = load_settings()
    datafolder.seed(settings)  # a fresh data folder gets the shipped menus and queues, as with dasan
    ctx = await AppContext.create(settings, migrate=False)
    try:
        routes = IvrRuntime.from_settings(ctx).routes()
        if route not in routes:
            await channel.verbose(f"dasan: no AGI route {route}")
            return 1
        await routes[route](channel)
        return 0
    finally:
        await ctx.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    route = argv[0] if argv else "main"
    # Asterisk talks UTF-8 (Korean in VERBOSE / SET VARIABLE); line-buffered both ways.
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)
    stdout = open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False, buffering=1)
    try:
        agi = Agi22(stdin, stdout)
    except AGIException:
        return 1
    try:
        return asyncio.run(run(route, PystChannel(agi)))
    except (ChannelHangup, AGIException, BrokenPipeError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
