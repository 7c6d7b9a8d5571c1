"""Caller languages: one registry of codes, names and espeak-ng voices (``languages.yaml``).

The registry sits beside the menus (``<menus_dir>/languages.yaml``; the package's own in
``ivr/menus/`` when the site has none), so a site adds a language with one data edit there
plus the language's texts in ``main.yaml`` (prompts, queue, night SMS) and its recordings.
The menus are checked against it, placeholder prompts use its voices, the console names
the languages with it and offers them for prompt uploads.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ivr import yamlfile

FILE = "languages.yaml"
DEFAULT_FILE = Path(str(resources.files("ivr"))) / "menus" / FILE
# ISO 639 codes: they name Asterisk's sound folders and CHANNEL(language), so plain letters.
Code = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]


class Language(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)  # its own name
    english: str = Field(min_length=1)
    voice: str = Field(pattern=r"^[A-Za-z0-9_+-]{1,40}$")  # espeak-ng voice for placeholders
    voice_note: str = ""  # why the voice is another language's
    # its name in the console's languages (ko, en); the English name when one is missing
    labels: dict[str, str] = Field(default_factory=dict)
    spell: Literal["as-written", "pinyin"] = "as-written"


class Languages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    languages: dict[Code, Language] = Field(min_length=1)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.languages)

    def get(self, code: str) -> Language | None:
        return self.languages.get(code)

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
