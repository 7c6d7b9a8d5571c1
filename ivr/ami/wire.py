"""The one gate every AMI action passes on its way to Asterisk.

AMI is ``Key: Value`` lines ended by CRLF, a blank line ends an action (manager.c reads a line
up to CR/LF). Written as they are, a CR or LF inside a value (a pause reason, a phone number)
would start a new header or a whole new action that runs with the bridge's privileges; a NUL
ends Asterisk's C string early. :func:`encode_action` is the only place an action becomes
bytes (``ivr.ami.client.AmiClientProtocol.send``): every action of every connection the
project opens (the bridge's ``AmiConnection`` and ``dasan asterisk apply``'s session, the
Login included) goes through :func:`check_action` there, so no caller can bypass it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ivr.ami.protocol import encode_message

# A header name: what Asterisk's actions use (letters, digits, '-', '_', '(' and ')' in some
# Variable names are values, not keys). Anything else could smuggle ': ' or a line break.
# Checked with fullmatch: re's '$' also matches before a final '\n' ("Reason\n" would pass).
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_UNSAFE = re.compile(r"[\r\n\x00]")


class UnsafeAmiValue(ValueError):
    """A value holds CR, LF or NUL, which would add a header or an action on the AMI wire."""


def ami_value(value: Any, key: str = "value") -> str:
    """``value`` as the text of one header, or ``UnsafeAmiValue`` if it would break the line."""
    text = value if isinstance(value, str) else str(value)
    if _UNSAFE.search(text):
        raise UnsafeAmiValue(f"{key}: line breaks and NUL are not allowed / 줄바꿈과 NUL 문자는 쓸 수 없습니다")
    return text


def check_action(action: Mapping[str, Any]) -> None:
    """Refuse an action whose keys or values would add lines; lists are repeated headers."""
    for key, value in action.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise UnsafeAmiValue(f"AMI header name {key!r} is not a plain name")
        for item in value if isinstance(value, list | tuple) else (value,):
            ami_value(item, key)


def encode_action(action: Mapping[str, Any], action_id: str) -> bytes:
    """The bytes of one action with its ActionID; a list value is a repeated header."""
    check_action(action)
    ami_value(action_id, "ActionID")
    pairs: list[tuple[str, str]] = []
    for key, value in action.items():
        if key.lower() == "actionid":
            continue
        for item in value if isinstance(value, list | tuple) else (value,):
            pairs.append((key, item if isinstance(item, str) else str(item)))
        if key.lower() == "action":
            pairs.append(("ActionID", action_id))
    if not any(k == "ActionID" for k, _ in pairs):
        pairs.append(("ActionID", action_id))
    return encode_message(pairs)
