"""The AudioSocket UUID of a call, as the rendered dialplan makes it (extensions.conf.j2,
[dasan-queue] with speech.live_listen): the first 32 hex digits of SHA1(linkedid), written as
a UUID. Asterisk and the console derive it from the same linkedid, so no table maps them."""

from __future__ import annotations

import hashlib


def live_stream_id(linkedid: str) -> str:
    """'1765000000.12' -> '3f0c…-…': the UUID Asterisk gives AudioSocket() for that call."""
    digest = hashlib.sha1(linkedid.encode()).hexdigest()[:32]
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
