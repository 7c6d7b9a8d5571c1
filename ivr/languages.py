"""Caller languages: one registry of codes, names, espeak-ng voices, the replies a citizen
gets about a service request, the browser call page's texts and the Open311 services' names
(``languages.yaml``).

The registry sits beside the menus (``<menus_dir>/languages.yaml``; the package's own in
``ivr/menus/`` when the site has none), so a site adds a language with one data edit there
plus the language's texts in ``main.yaml`` (prompts, queue, night SMS) and its recordings.
The menus are checked against it, placeholder prompts use its voices, the console names
the languages with it and offers them for prompt uploads, the Open311 SMS and spoken
status replies (``ivr.open311.texts``) are its ``replies``, the /call page speaks the
languages that have ``page`` texts, and a service's name in a language (SMS, IVR,
``services.json?lang=``) is in its ``services``. A text a language lacks is its ``fallback``
language's, else the first language's (which must have them all).
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
    # How a reply names a citizen whose name is not known: an article's "{name}님" becomes
    # "고객님", never "님". Optional: a language without it takes its fallback's.
    someone: str = ""

    @model_validator(mode="after")
    def _known_placeholders(self) -> Replies:
        allowed = {"open": set(), "closed": set(), "received": {"site", "service", "id"},
                   "updated": {"site", "service", "id", "status"}, "spoken": {"service", "id", "status"},
                   "expected": {"date"}, "not_found": {"id"}, "someone": set()}
        for name, names in allowed.items():
            try:
                unknown = sorted(_placeholders(getattr(self, name)) - names)
            except ValueError as exc:  # an unmatched brace
                raise ValueError(f"{name}: {exc}") from None
            if unknown:
                raise ValueError(f"{name}: unknown placeholder {{{unknown[0]}}} (expected some of "
                                 f"{', '.join('{' + n + '}' for n in sorted(names)) or 'none'})")
        return self


class PageTexts(BaseModel):
    """The browser call page's words (/call, ``ivr.webrtc``): button labels and headings, then
    the messages. Any may be missing but in the first language (a missing one is read from the
    language's ``fallback``, else the first language)."""

    model_config = ConfigDict(extra="forbid")

    app_name: str | None = None
    language: str | None = None
    video_call: str | None = None
    voice_call: str | None = None
    chat: str | None = None
    report: str | None = None
    track: str | None = None
    hang_up: str | None = None
    mute: str | None = None
    keypad: str | None = None
    tracking_number: str | None = None
    check: str | None = None
    send: str | None = None
    description: str | None = None
    photo: str | None = None
    address: str | None = None
    category: str | None = None
    intro: str | None = None
    connecting: str | None = None
    waiting: str | None = None
    in_call: str | None = None
    ended: str | None = None
    err_permission: str | None = None
    err_no_camera: str | None = None
    err_no_microphone: str | None = None
    err_network: str | None = None
    err_no_agent: str | None = None
    err_closed: str | None = None
    err_busy: str | None = None
    err_unavailable: str | None = None
    err_expired: str | None = None
    err_unsupported: str | None = None
    err_disabled: str | None = None
    alt_chat: str | None = None
    report_done: str | None = None
    track_none: str | None = None
    track_status: str | None = None
    offline: str | None = None
    survey_q: str | None = None
    survey_thanks: str | None = None

    def missing(self) -> list[str]:
        return [key for key in type(self).model_fields if not getattr(self, key)]


class Language(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)  # its own name
    english: str = Field(min_length=1)
    voice: str = Field(pattern=r"^[A-Za-z0-9_+-]{1,40}$")  # espeak-ng voice for placeholders
    voice_note: str = ""  # why the voice is another language's
    # its name in the console's languages (ko, en); the English name when one is missing
    labels: dict[str, str] = Field(default_factory=dict)
    spell: Literal["as-written", "pinyin"] = "as-written"
    # the language whose texts stand in for those this one lacks (else the first language)
    fallback: Code | None = None
    # Open311 SMS and spoken status replies
    replies: Replies | None = None
    # the browser call page's texts; the page offers the languages that have some
    page: PageTexts | None = None
    # Open311 service names (service_code -> name) for SMS, the IVR and services.json?lang=
    services: dict[str, str] = Field(default_factory=dict)


class Languages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    languages: dict[Code, Language] = Field(min_length=1)

    @field_validator("languages")
    @classmethod
    def _first_has_everything(cls, languages: dict[str, Language]) -> dict[str, Language]:
        first, lang = next(iter(languages.items()))
        if lang.replies is None:
            raise ValueError(f"the first language ({first}) needs `replies`: the others fall back to it")
        missing = lang.page.missing() if lang.page is not None else ["page"]
        if missing:
            raise ValueError(f"the first language ({first}) needs every `page` text (the others fall back to "
                             f"it): {', '.join(missing)} missing")
        for code, language in languages.items():
            if language.fallback is not None and language.fallback not in languages:
                raise ValueError(f"{code}: fallback {language.fallback!r} is not a language of this file")
            if language.fallback == code:
                raise ValueError(f"{code}: a language cannot fall back to itself")
        return languages

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.languages)

    def get(self, code: str) -> Language | None:
        return self.languages.get(code)

    def chain(self, code: str | None) -> list[str]:
        """Where ``code``'s texts are looked up, in order: itself (if known), its ``fallback``
        and theirs, and last the first language."""
        order: list[str] = []
        while code in self.languages and code not in order:
            order.append(code)
            code = self.languages[code].fallback
        return order if self.codes[0] in order else [*order, self.codes[0]]

    def replies_language(self, code: str | None) -> str:
        """The language whose replies ``code``'s citizens get: its own, its fallback's, else
        the first language's (the site's own)."""
        return next(c for c in self.chain(code) if self.languages[c].replies is not None)

    def replies(self, code: str | None) -> Replies:
        found = self.languages[self.replies_language(code)].replies
        assert found is not None  # replies_language picks a language that has them
        return found

    def someone(self, code: str | None) -> str:
        """How ``code``'s replies name an unknown citizen: its own word, its fallback's, else ''."""
        for c in self.chain(code):
            replies = self.languages[c].replies
            if replies is not None and replies.someone:
                return replies.someone
        return ""

    @property
    def page_languages(self) -> tuple[str, ...]:
        """The languages the browser call page offers: those with page texts of their own."""
        return tuple(code for code, lang in self.languages.items() if lang.page is not None)

    def page_texts(self, code: str | None) -> dict[str, str]:
        """Every text of the call page in ``code``, each from the first language of its chain
        that has it."""
        pages = [page for c in self.chain(code) if (page := self.languages[c].page) is not None]
        return {key: next(text for page in pages if (text := getattr(page, key))) for key in PageTexts.model_fields}

    def service_name(self, code: str | None, service_code: str, default: str) -> str:
        """A service's name in ``code`` (else its fallback's, else the first language's), or
        ``default`` (the catalogue's ``service_name``) when none names it."""
        return next((name for c in self.chain(code) if (name := self.languages[c].services.get(service_code))),
                    default)

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
