"""Placeholder prompts: synthesize every menu prompt in every language with espeak-ng.

Files go where Asterisk looks for them: ``<sounds_dir>/<language>/<sound_folder>/<name>.wav``,
8 kHz mono 16-bit WAV (what the admin console's upload converts recordings to as well).
Voices: ko, en, vi as they are; Chinese through ``cmn-latn-pinyin`` (the Hanzi text is turned
into tone-numbered pinyin with pypinyin); Japanese from kana (espeak-ng's ja voice reads kana
only, so the menu texts are kana); Mongolian has no espeak-ng voice: the documented fallback
is the Russian voice reading the Cyrillic text (intelligible placeholders, not Mongolian
pronunciation; record real ones).

A recording an admin put in place is never overwritten: synthesized files are listed in
``.placeholders.json`` beside them, and only those are replaced (``--force`` replaces all).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ivr.engine.menu import MenuSet
from ivr.languages import Language, Languages, load_languages

EXTENSIONS = (".wav", ".ulaw", ".alaw", ".gsm", ".sln", ".g722", ".wav16")
MANIFEST = ".placeholders.json"
_PINYIN_DIGITS = {"0": "ling2", "1": "yi1", "2": "er4", "3": "san1", "4": "si4", "5": "wu3", "6": "liu4",
                  "7": "qi1", "8": "ba1", "9": "jiu3"}
_CJK_PUNCT = str.maketrans({"，": ",", "。": ".", "：": ":", "？": "?", "！": "!", "、": ",", "；": ";"})
_NUMBER = re.compile(r"(?<![a-zü])\d+")
_KANJI = re.compile(r"[\u4e00-\u9fff]")


def pinyin(text: str) -> str:
    """Hanzi -> tone-numbered pinyin for espeak-ng's cmn-latn-pinyin voice."""
    from pypinyin import Style, lazy_pinyin

    words = lazy_pinyin(text.translate(_CJK_PUNCT), style=Style.TONE3, neutral_tone_with_five=True)
    text = " ".join(w.strip() for w in words if w.strip())
    # numbers (not the tone digits that end syllables) are read digit by digit, in Chinese
    return _NUMBER.sub(lambda m: " " + " ".join(_PINYIN_DIGITS[ch] for ch in m[0]) + " ", text).strip()


def _language(language: str, registry: Languages | None) -> Language:
    found = (registry or load_languages()).get(language)
    if found is None:
        raise ValueError(f"language {language!r} is not in languages.yaml")
    return found


def synth_text(language: str, text: str, registry: Languages | None = None) -> str:
    """What espeak-ng is given: the text, or its pinyin for a voice that reads pinyin."""
    return pinyin(text) if _language(language, registry).spell == "pinyin" else text


@dataclass
class Needed:
    prompt: str
    language: str
    text: str

    def path(self, sounds_dir: Path, folder: str) -> Path:
        return sounds_dir / self.language / folder / f"{self.prompt}.wav"


def needed(menus: MenuSet, languages: list[str] | None = None) -> list[Needed]:
    """Every (prompt, language) file the menus play."""
    out = []
    for name in menus.prompts:
        fixed = menus.fixed_language(name)
        for lang in [fixed] if fixed else menus.languages:
            if languages and lang not in languages:
                continue
            out.append(Needed(name, lang, menus.prompts[name][lang]))
    return out


def existing(base: Path) -> Path | None:
    """The sound file Asterisk would use for ``base`` (any format), if one exists."""
    for ext in EXTENSIONS:
        candidate = base.with_suffix(ext)
        if candidate.exists():
            return candidate
    return None


@dataclass
class Report:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # recordings (or up-to-date placeholders)
    missing: list[Needed] = field(default_factory=list)
    placeholders: list[Path] = field(default_factory=list)
    recorded: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _manifest(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / MANIFEST).read_text())
        return {str(k): str(v) for k, v in data.items()}
    except (FileNotFoundError, ValueError):
        return {}


def _digest(language: str, text: str, registry: Languages) -> str:
    return hashlib.sha256(f"{_language(language, registry).voice}\n{text}".encode()).hexdigest()[:16]


def check(menus: MenuSet, sounds_dir: Path) -> Report:
    report = Report()
    manifests: dict[Path, dict[str, str]] = {}
    for item in needed(menus):
        base = item.path(sounds_dir, menus.sound_folder)
        found = existing(base)
        if found is None:
            report.missing.append(item)
            continue
        manifest = manifests.setdefault(base.parent, _manifest(base.parent))
        (report.placeholders if found.name in manifest else report.recorded).append(found)
    return report


async def _run(*cmd: str) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {err.decode(errors='replace')[:300]}")


async def synthesize_one(language: str, text: str, target: Path, registry: Languages | None = None) -> None:
    """espeak-ng -> 8 kHz mono 16-bit WAV (sox resamples with a proper filter)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        voice = _language(language, registry).voice
        await _run("espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), synth_text(language, text, registry))
        out = Path(tmp) / "out.wav"
        await _run("sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out))
        shutil.move(str(out), target)


async def synthesize(menus: MenuSet, sounds_dir: Path, languages: list[str] | None = None,
                     force: bool = False, jobs: int = 2) -> Report:
    """Write placeholders for every prompt that has no recording; returns what was done."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install {tool})")
    report = Report()
    registry = menus.registry
    for lang in menus.languages:
        note = _language(lang, registry).voice_note
        if note and (not languages or lang in languages):
            report.warnings.append(f"{lang}: {note}")
    todo: list[tuple[Needed, Path]] = []
    manifests: dict[Path, dict[str, str]] = {}
    for item in needed(menus, languages):
        base = item.path(sounds_dir, menus.sound_folder)
        manifest = manifests.setdefault(base.parent, _manifest(base.parent))
        found = existing(base)
        if item.language == "ja" and _KANJI.search(item.text):
            report.warnings.append(f"ja/{item.prompt}: kanji in the text; espeak-ng reads kana only")
        if found is not None and not force:
            if found.name not in manifest or manifest[found.name] == _digest(item.language, item.text, registry):
                report.kept.append(found)  # a recording, or a placeholder of the same text
                continue
        todo.append((item, base))
    gate = asyncio.Semaphore(jobs)

    async def one(item: Needed, target: Path) -> None:
        async with gate:
            await synthesize_one(item.language, item.text, target, registry)
        manifests[target.parent][target.name] = _digest(item.language, item.text, registry)
        report.written.append(target)

    await asyncio.gather(*(one(item, target) for item, target in todo))
    for folder, manifest in manifests.items():
        if manifest:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return report
