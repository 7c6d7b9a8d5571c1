"""A ``Channel`` without sockets for unit tests of the engine: keys come from a script, what the
engine plays and sets is recorded.

The script has one token per prompt that accepts keys, as ``dasan call`` takes them: digits to
press ("9", "123"), ``T`` to let it time out, ``H`` to hang up there. Prompts played without
reading keys take none. When the script runs out, the caller hangs up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ivr.engine.channel import ChannelHangup


@dataclass
class FakeChannel:
    script: list[str]
    env: Mapping[str, str] = field(default_factory=lambda: {
        "agi_language": "ko", "agi_callerid": "01012345678", "agi_channel": "PJSIP/trunk-00000001",
        "agi_uniqueid": "1795593159.8"})
    linkedid: str = "1795593159.8"
    heard: list[str] = field(default_factory=list)  # sound names, and "digits:123" / "alpha:AB"
    variables: dict[str, str] = field(default_factory=dict)
    answered: bool = False
    hung_up: bool = False

    def _key(self, escape: str) -> str:
        if not self.script:
            raise ChannelHangup("the script ended")
        token = self.script.pop(0)
        if token == "H":
            self.hung_up = True
            raise ChannelHangup("the caller hung up")
        if token == "T":
            return ""
        if escape and token[:1] not in escape:
            return ""  # a key the prompt does not take is ignored, as Asterisk does
        return token

    async def answer(self) -> None:
        self.answered = True

    async def play(self, prompt: str, escape: str = "") -> str:
        self.heard.append(prompt)
        return self._key(escape)[:1] if escape else ""

    async def read_digits(self, prompt: str, timeout: float, max_digits: int) -> str:
        if prompt:
            self.heard.append(prompt)
        return self._key("")[:max_digits]

    async def say_digits(self, digits: str) -> None:
        self.heard.append(f"digits:{digits}")

    async def say_alpha(self, text: str) -> None:
        self.heard.append(f"alpha:{text}")

    async def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value

    async def get_variable(self, name: str) -> str:
        if name == "CHANNEL(linkedid)":
            return self.linkedid
        return self.variables.get(name, "")

    async def hangup(self) -> None:
        self.hung_up = True

    async def verbose(self, message: str, level: int = 1) -> None:
        pass
