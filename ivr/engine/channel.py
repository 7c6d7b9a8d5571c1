"""The small channel interface the engine is written against.

Transports implement it: FastAGI (``ivr.agi.channel.AgiChannel``), process AGI through pyst2
(``agi_scripts``) and, through FastAGI, the scripted test caller. Prompt names are Asterisk
sound names without extension (``dasan/main-menu``); Asterisk picks the language folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class ChannelHangup(Exception):
    """The caller hung up (or the connection to Asterisk was lost): stop driving the call."""


class LinkLost(ChannelHangup):
    """The connection to Asterisk broke without Asterisk saying the caller hung up: its node
    died (or the network between). How the call ended is not known here; the AMI bridge or the
    cluster watch (lost_with_node) closes the contact."""


class Channel(Protocol):
    env: Mapping[str, str]

    async def answer(self) -> None: ...

    async def play(self, prompt: str, escape: str = "") -> str:
        """Play a prompt; returns the escape digit pressed during it, or ''."""
        ...

    async def read_digits(self, prompt: str, timeout: float, max_digits: int) -> str:
        """Play ``prompt`` (may be '') and collect up to ``max_digits``; '' on timeout."""
        ...

    async def say_digits(self, digits: str) -> None: ...

    async def say_alpha(self, text: str) -> None: ...

    async def set_variable(self, name: str, value: str) -> None: ...

    async def get_variable(self, name: str) -> str:
        """A variable or expression (``CHANNEL(linkedid)``); '' when unset."""
        ...

    async def hangup(self) -> None: ...

    async def verbose(self, message: str, level: int = 1) -> None: ...
