"""``Channel`` over an AGI stream: the real Asterisk commands, hang-up aware.

Sound names and values are sent through ``ivr.agi.wire.agi_arg`` (quoted as res_agi.c reads
them, line breaks refused), names and numbers through ``agi_word``.
"""

from __future__ import annotations

import logging
import string

from ivr.agi.protocol import AgiDisconnected, AgiError, AgiReply, AgiStream, AgiTimeout
from ivr.agi.wire import agi_arg, agi_word
from ivr.engine.channel import ChannelHangup, LinkLost

log = logging.getLogger("dasan.agi")
_SAFE_ALPHA = set(string.ascii_letters + string.digits)


def _one_line(message: str) -> str:
    """A log message for VERBOSE: line breaks become spaces (it is only logged)."""
    return " ".join(message.replace("\x00", " ").splitlines())


class AgiChannel:
    """One call. Every method raises ``ChannelHangup`` once the caller is gone."""

    __slots__ = ("env", "stream")

    def __init__(self, stream: AgiStream) -> None:
        self.stream = stream
        self.env = stream.env

    async def _send(self, text: str) -> AgiReply:
        try:
            reply = await self.stream.command(text)
        except AgiDisconnected as exc:
            if self.stream.hung_up:
                raise ChannelHangup(f"caller hung up, then disconnected: {exc}") from None
            raise LinkLost(f"disconnected with no hang-up from Asterisk: {exc}") from None
        except AgiTimeout as exc:
            raise ChannelHangup(f"silent: {exc}") from None
        if reply.code == 511:
            raise ChannelHangup("dead channel (511)")
        if reply.code != 200:
            raise AgiError(f"{text.split(' ', 2)[:2]} refused: {reply.code} {reply.extra[:200]}")
        return reply

    async def _media(self, text: str) -> AgiReply:
        """A command that plays or waits: -1 means hang-up, or (STREAM FILE) a missing file."""
        reply = await self._send(text)
        if reply.result == "-1":
            if self.stream.hung_up:
                raise ChannelHangup("caller hung up")
            # STREAM FILE answers -1 for a missing sound file too: ask whether the channel lives.
            await self._send("CHANNEL STATUS")
            log.warning("prompt missing or failed: %s", text)
        return reply

    async def answer(self) -> None:
        await self._send("ANSWER")

    async def play(self, prompt: str, escape: str = "") -> str:
        reply = await self._media(f"STREAM FILE {agi_arg(prompt)} {agi_arg(escape)}")
        return chr(reply.value) if reply.value > 0 else ""

    async def read_digits(self, prompt: str, timeout: float, max_digits: int) -> str:
        reply = await self._send(f"GET DATA {agi_arg(prompt or 'silence/1')} {int(timeout * 1000)} {int(max_digits)}")
        if reply.result != "-1":
            return reply.result
        if self.stream.hung_up:
            raise ChannelHangup("caller hung up")
        # Asterisk 22 answers -1 at once when the prompt file is missing: if the channel lives,
        # read the keys without a prompt so the caller can still choose.
        await self._send("CHANNEL STATUS")
        log.warning("prompt missing: %s (reading keys without it)", prompt)
        return await self._wait_digits(timeout, max_digits)

    async def _wait_digits(self, timeout: float, max_digits: int) -> str:
        digits = ""
        while len(digits) < max_digits:
            reply = await self._send(f"WAIT FOR DIGIT {int(timeout * 1000)}")
            if reply.result == "-1":
                raise ChannelHangup("caller hung up")
            if reply.value <= 0 or chr(reply.value) == "#":
                break
            digits += chr(reply.value)
        return digits

    async def say_digits(self, digits: str) -> None:
        clean = "".join(ch for ch in digits if ch.isdigit())
        if clean:
            await self._media(f'SAY DIGITS {clean} ""')

    async def say_alpha(self, text: str) -> None:
        clean = "".join(ch for ch in text if ch in _SAFE_ALPHA)
        if clean:
            await self._media(f'SAY ALPHA {clean} ""')

    async def set_variable(self, name: str, value: str) -> None:
        await self._send(f"SET VARIABLE {agi_word(name)} {agi_arg(value)}")

    async def get_variable(self, name: str) -> str:
        reply = await self._send(f"GET FULL VARIABLE ${{{agi_word(name)}}}")
        return reply.data or "" if reply.result == "1" else ""

    async def hangup(self) -> None:
        await self._send("HANGUP")

    async def verbose(self, message: str, level: int = 1) -> None:
        await self._send(f"VERBOSE {agi_arg(_one_line(message))} {int(level)}")
