"""Caller languages: one registry of codes, names, espeak-ng voices and the replies a citizen
gets about a service request (``languages.yaml``).

The registry sits beside the menus (``<menus_dir>/languages.yaml``; the package's own in
``ivr/menus/`` when the site has none), so a site adds a language with one data edit there
plus the language's texts in ``main.yaml`` (prompts, queue, night SMS) and its recordings.
The menus are checked against it, placeholder prompts use its voices, the console names
the languages with it and offers them for prompt uploads, and the Open311 SMS and spoken
status replies (``ivr.open311.texts``) are its ``replies``.
"""

from __future__ import annotations

import functools
import string
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivr import yamlfile

FILE = "languages.yaml"
DEFAULT_FILE = Path(str(resources.files("ivr"))) / "menus" / FILE
# ISO 639 codes: they name Asterisk's sound folders and CHANNEL(language), so plain letters.
Code = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


class Replies(BaseModel):
    """What a citizen reads (SMS) or hears (IVR) about a service request, in one language.

    Placeholders: ``{site}`` the site's name, ``{service}`` the service's name in the language,
    ``{id}`` the tracking number (spoken digit by digit), ``{status}`` the ``open``/``closed``
    word, ``{date}`` the expected date.
    """

    model_config = ConfigDict(extra="forbid")

    open: str = Field(min_length=1)  # the status word of an open request
    closed: str = Field(min_length=1)
    received: str = Field(min_length=1)  # SMS: request received
    updated: str = Field(min_length=1)  # SMS: its status changed
    spoken: str = Field(min_length=1)  # IVR: a keyed-in number's status
    expected: str = Field(min_length=1)  # appended to updated/spoken while open with a date
    not_found: str = Field(min_length=1)  # IVR: no such number

    @model_validator(mode="after")
    def _known_placeholders(self) -> Replies:
        allowed = {"open": set(), "closed": set(), "received": {"site", "service", "id"},
                   "updated": {"site", "service", "id", "status"}, "spoken": {"service", "id", "status"},
                   "expected": {"date"}, "not_found": {"id"}}
        for name, names in allowed.items():
            try:
                unknown = sorted(_placeholders(getattr(self, name)) - names)
            except ValueError as exc:  # an unmatched brace
                raise ValueError(f"{name}: {exc}") from None
            if unknown:
                raise ValueError(f"{name}: unknown placeholder {{{unknown[0]}}} (expected some of "
                                 f"{', '.join('{' + n + '}' for n in sorted(names)) or 'none'})")
        return self


class Language(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)  # its own name
    english: str = Field(min_length=1)
    voice: str = Field(pattern=r"^[A-Za-z0-9_+-]{1,40}$")  # espeak-ng voice for placeholders
    voice_note: str = ""  # why the voice is another language's
    # its name in the console's languages (ko, en); the English name when one is missing
    labels: dict[str, str] = Field(default_factory=dict)
    spell: Literal["as-written", "pinyin"] = "as-written"
    # Open311 SMS and spoken status replies; a language without them reads the first language's
    replies: Replies | None = None


class Languages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    languages: dict[Code, Language] = Field(min_length=1)

    @field_validator("languages")
    @classmethod
    def _first_has_replies(cls, languages: dict[str, Language]) -> dict[str, Language]:
        first = next(iter(languages))
        if languages[first].replies is None:
            raise ValueError(f"the first language ({first}) needs `replies`: the others fall back to it")
        return languages

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.languages)

    def get(self, code: str) -> Language | None:
        return self.languages.get(code)

    def replies_language(self, code: str | None) -> str:
        """``code`` when it has its own replies, else the first language (the site's own)."""
        found = self.languages.get(code or "")
        return code if found is not None and found.replies is not None and code else self.codes[0]

    def replies(self, code: str | None) -> Replies:
        found = self.languages[self.replies_language(code)].replies
        assert found is not None  # replies_language picks a language that has them
        return found

    def labels(self, console_language: str) -> dict[str, str]:
        """``lang_<code>`` -> the language's name, for the console's texts in ``console_language``."""
        return {f"lang_{code}": lang.labels.get(console_language) or lang.english
                for code, lang in self.languages.items()}


def path_for(menus_dir: Path | None) -> Path:
    """The site's registry beside its menus, else the package's."""
    if menus_dir is not None and (menus_dir / FILE).is_file():
        return menus_dir / FILE
    return DEFAULT_FILE


def load_languages(menus_dir: Path | None = None) -> Languages:
    """The registry for menus in ``menus_dir`` (re-read when the file changes); raises
    ``yamlfile.DataError`` naming file and line."""
    path = path_for(menus_dir)
    return _load(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)  # a few folders (the site's, a console candidate's), each as changed
def _load(path: Path, _mtime_ns: int) -> Languages:
    return yamlfile.validate(Languages, yamlfile.load(path))
