"""Placeholder prompts: espeak-ng in six languages into Asterisk's sound layout, 8 kHz mono."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from ivr import prompts
from ivr.cli import main
from ivr.engine.menu import MenuSet, load_menus
from ivr.engine.runtime import MENU_FILE
from tests.support.ivr_harness import MENUS_DIR


@pytest.fixture(autouse=True)
def _synthesis_tools() -> None:
    """Installable tools: their absence fails the tests instead of skipping them."""
    missing = [tool for tool in ("espeak-ng", "sox") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed (make debs-run installs them)")


TEXTS = {"ko": "안녕하세요. 1번을 누르세요.", "en": "Hello. Press 1.", "zh": "您好，请按1。",
         "ja": "こんにちは。いちを おしてください。", "vi": "Xin chào. Bấm phím 1.", "mn": "Сайн байна уу. 1 дарна уу."}


def small_menus(hello: dict[str, str] | None = None) -> MenuSet:
    return MenuSet.model_validate({
        "on_failure": "main", "queues": {lang: "general-ko" for lang in TEXTS},
        "prompts": {"hello": hello or TEXTS, "lang-en": {"en": "For English, press 1."}},
        "nodes": {"main": {"kind": "menu", "prompt": "hello", "options": {"1": "main"}}},
    })


def read_wav(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path)) as w:
        frames = w.readframes(w.getnframes())
        peak = max(abs(int.from_bytes(frames[i:i + 2], "little", signed=True)) for i in range(0, len(frames), 2))
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), peak / 32768


def test_pinyin_for_the_chinese_voice() -> None:
    assert prompts.pinyin("交通请按1，其他语言请按9。") == "jiao1 tong1 qing3 an4  yi1 , qi2 ta1 yu3 yan2 qing3 an4  jiu3 ."
    assert prompts.synth_text("ko", "교통") == "교통"


async def test_synthesize_every_language_then_keep_recordings(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    menus = small_menus()
    report = await prompts.synthesize(menus, sounds)
    assert len(report.written) == 7 and not report.kept
    assert any(w.startswith("mn: no espeak-ng voice") for w in report.warnings)
    for lang in TEXTS:
        rate, channels, width, peak = read_wav(sounds / lang / "dasan" / "hello.wav")
        assert (rate, channels, width) == (8000, 1, 2), lang
        assert peak > 0.05, f"{lang}: silent"
    assert (sounds / "en" / "dasan" / "lang-en.wav").exists()
    assert not (sounds / "ko" / "dasan" / "lang-en.wav").exists()  # a one-language prompt
    assert menus.sound("lang-en") == "en/dasan/lang-en" and menus.sound("hello") == "dasan/hello"

    # An admin's recording replaces the Korean placeholder; a text change re-synthesizes only
    # placeholders, never the recording.
    recording = sounds / "ko" / "dasan" / "hello.wav"
    shutil.copy(sounds / "en" / "dasan" / "hello.wav", recording)
    recorded = recording.read_bytes()
    manifest = (sounds / "ko" / "dasan" / prompts.MANIFEST)
    manifest.write_text("{}")  # the admin's upload is not a placeholder
    changed = small_menus({**TEXTS, "ko": "새 안내 문구입니다.", "en": "A new text."})
    report = await prompts.synthesize(changed, sounds)
    assert sounds / "en" / "dasan" / "hello.wav" in report.written
    assert recording in report.kept and recording.read_bytes() == recorded
    check = prompts.check(changed, sounds)
    assert check.recorded == [recording] and len(check.placeholders) == 6 and not check.missing

    (sounds / "vi" / "dasan" / "hello.wav").unlink()
    check = prompts.check(changed, sounds)
    assert [(m.language, m.prompt) for m in check.missing] == [("vi", "hello")]


def test_default_menus_need_every_prompt_in_every_language() -> None:
    menus = load_menus(MENUS_DIR / MENU_FILE)
    needed = prompts.needed(menus)
    per_lang = {lang: {n.prompt for n in needed if n.language == lang} for lang in menus.languages}
    shared = {name for name, texts in menus.prompts.items() if len(texts) > 1}
    for lang, names in per_lang.items():
        assert shared <= names and f"lang-{lang}" in names, lang
    # Japanese is kana only: espeak-ng's ja voice cannot read kanji
    assert not [n for n in needed if n.language == "ja" and prompts._KANJI.search(n.text)]


def test_cli_check_and_synth_one_language(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASAN__DATA_DIR", str(tmp_path))
    sounds = tmp_path / "sounds"
    assert main(["prompts", "check", "--sounds-dir", str(sounds)]) == 1
    out = capsys.readouterr().out
    menus = load_menus(MENUS_DIR / MENU_FILE)
    total, vi = len(prompts.needed(menus)), len(prompts.needed(menus, ["vi"]))
    assert "missing: mn/dasan/main-menu" in out and f"0 recorded, 0 placeholders, {total} missing" in out
    assert main(["prompts", "synth", "--lang", "vi", "--sounds-dir", str(sounds)]) == 1  # others still missing
    out = capsys.readouterr().out
    assert f"synthesized {vi} placeholder prompts" in out and f"{vi} placeholders, {total - vi} missing" in out
    assert read_wav(sounds / "vi" / "dasan" / "main-menu.wav")[:3] == (8000, 1, 2)
