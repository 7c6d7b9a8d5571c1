"""The AudioSocket UUIDs of a call, as the rendered dialplan makes them (extensions.conf.j2,
[dasan-queue] with speech.live_listen). Asterisk and the console derive them from the same
linkedid, so no table maps streams to calls or speakers.

From the first 32 hex digits of SHA1(linkedid) the dialplan writes an RFC 9562 version-8
("custom") UUID: digit 13 is the version ``8``, digit 17 the variant ``8``, and the last digit
names what the stream is: ``0`` the call (the id the screen-pops carry), ``1`` the caller's
own audio, ``2`` the agent's own audio (one ChanSpy with option ``o`` on each leg). A random
(version-4) UUID, such as a test peer's, names no speaker.
"""

from __future__ import annotations

import hashlib
import uuid

SPEAKER_DIGITS = {"caller": "1", "agent": "2"}
CALL_DIGIT = "0"
SPEAKERS = {digit: speaker for speaker, digit in SPEAKER_DIGITS.items()}


def _prefix(linkedid: str) -> str:
    """The UUID without its last digit, as the dialplan's ``LIVE_PREFIX``."""
    h = hashlib.sha1(linkedid.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-8{h[17:20]}-{h[20:31]}"


def live_stream_id(linkedid: str) -> str:
    """'1765000000.12' -> the call's stream id (UUID ending in 0), as the screen-pops carry it."""
    return _prefix(linkedid) + CALL_DIGIT


def speaker_stream_id(linkedid: str, speaker: str) -> str:
    """The UUID Asterisk gives AudioSocket() for one speaker's audio of that call."""
    return _prefix(linkedid) + SPEAKER_DIGITS[speaker]


def stream_speaker(stream: str) -> tuple[str, str | None]:
    """A stream UUID -> (the call's stream id, "caller" | "agent"), or (stream, None) if the
    UUID names no speaker (not a dasan version-8 UUID, or the call's own id)."""
    parsed = uuid.UUID(stream)
    text = str(parsed)
    speaker = SPEAKERS.get(text[-1])
    if parsed.version != 8 or parsed.variant != uuid.RFC_4122 or speaker is None:
        return text, None
    return text[:-1] + CALL_DIGIT, speaker
