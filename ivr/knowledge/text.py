"""How article text is searched and filled in.

Korean writes particles onto words and spaces compound nouns freely: "버스 정류장이",
"버스정류장이" and "버스정류장" are one thing to a reader. Articles are searched in a compact
form (casefolded, all white space removed) and each query word loses a trailing particle, so
"버스정류장" and "버스 정류장에서" both find "버스 정류장이 옮겨졌습니다".

Article bodies may hold variables (``{tracking_number}``, ``{name}``) that the agent's
reply, the SMS auto-reply or the IVR fill from the contact.
"""

from __future__ import annotations

import re

# Longest first, so "에서" is removed rather than its last syllable alone.
PARTICLES = sorted((
    "에서는", "으로는", "에게서", "한테서", "이라고", "에서", "에게", "한테", "으로", "까지", "부터", "처럼",
    "보다", "이나", "이랑", "이며", "은", "는", "이", "가", "을", "를", "에", "로", "의", "와", "과", "도", "만",
), key=len, reverse=True)
HANGUL = re.compile(r"[\uac00-\ud7a3]")
SPACE = re.compile(r"\s+")
VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
VARIABLES = ("tracking_number", "name", "phone", "queue")


def compact(text: str) -> str:
    """``text`` casefolded with every white space removed: what the indexes hold and terms match."""
    return SPACE.sub("", text.casefold())


def strip_particle(word: str) -> str:
    """``word`` without one trailing Korean particle, keeping at least two syllables."""
    if not HANGUL.search(word[-1:]):
        return word
    for particle in PARTICLES:
        if word.endswith(particle) and len(word) - len(particle) >= 2:
            return word[: -len(particle)]
    return word


def unknown_variables(body: str) -> list[str]:
    """Variables in ``body`` the renderer cannot fill (a typo would reach a citizen as "{nmae}")."""
    return sorted({v for v in VARIABLE.findall(body) if v not in VARIABLES})


def fill(body: str, values: dict[str, str | None]) -> tuple[str, list[str]]:
    """``body`` with its variables replaced; also the variables that had no value (left as written)."""
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value:
            return value
        missing.append(match.group(1))
        return match.group(0)

    return VARIABLE.sub(one, body), sorted(set(missing))
