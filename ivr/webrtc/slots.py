"""The citizen endpoints Asterisk knows: a fixed pool per kind, named so the kind shows.

A browser call is placed from one of these endpoints with a password set for one session
(ivr.webrtc.credentials); the channel name (``PJSIP/webvideo-03-00000012``) tells the records
which kind of contact it is.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["video", "voice"]
KINDS: tuple[Kind, ...] = ("video", "voice")
PREFIX: dict[Kind, str] = {"video": "webvideo-", "voice": "webvoice-"}
# Contact channel of each kind (ivr.db.models.Channel values).
CONTACT_CHANNEL: dict[Kind, str] = {"video": "video", "voice": "web_voice"}
# astdb families: the sorcery ``auth`` objects (sorcery.conf maps res_pjsip auth here) and
# each slot's expiry (epoch seconds) that the dialplan checks as the call starts.
AUTH_PREFIX = "dasan-webrtc"  # sorcery astdb wizard: objects of type auth under <prefix>/auth
AUTH_FAMILY = f"{AUTH_PREFIX}/auth"
EXPIRY_FAMILY = "dasan-webrtc-expires"


def slot_names(kind: Kind, count: int) -> list[str]:
    return [f"{PREFIX[kind]}{n:03d}" for n in range(1, count + 1)]


def contact_channel(channel: str) -> str:
    """The contact channel (``voice``, ``video``, ``web_voice``) of a call from its Asterisk channel."""
    kind = kind_of_channel(channel)
    return CONTACT_CHANNEL[kind] if kind else "voice"


def kind_of_channel(channel: str) -> Kind | None:
    """The kind of a browser call from its Asterisk channel name, None for anything else."""
    tech, _, rest = channel.partition("/")
    if tech.upper() != "PJSIP":
        return None
    for kind, prefix in PREFIX.items():
        if rest.startswith(prefix):
            return kind
    return None
