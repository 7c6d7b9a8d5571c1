"""``dasan call`` (issue #18): unknown languages and keys are refused with a clear message before
any call is made; every walk prints exactly one ``ends:`` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.agi.cli import ending
from ivr.cli import main


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DASAN__DATA_DIR", str(tmp_path / "data"))  # the shipped menus, seeded there
    return tmp_path


@pytest.mark.parametrize("digits", ["9 x", "1 2a", "-1", "9 ;"])
def test_keys_that_are_not_keys_are_refused(site: Path, digits: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--digits", digits]) == 2
    out = capsys.readouterr()
    assert "keys are 0-9, * and #" in out.err and out.out == ""


def test_an_unknown_language_is_refused(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--lang", "xx", "--digits", "1"]) == 2
    out = capsys.readouterr()
    assert "--lang 'xx' is not a language of the menus (ko, " in out.err and out.out == ""


@pytest.mark.parametrize("digits", ["", "9 1", "T T T", "1 H", "# *"])
def test_every_walk_prints_one_ending(site: Path, digits: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--digits", digits]) == 0
    out = capsys.readouterr().out
    assert out.count("  ends: ") == 1 and out.rstrip("\n").splitlines()[-1].startswith("  ends: "), out


def test_the_ending_names_the_decision_first() -> None:
    assert ending({"IVR_RESULT": "queue", "QUEUE": "en"}, hung_up=True).startswith("queue en /")
    assert ending({}, hung_up=True).startswith("caller hung up before a decision")
    assert ending({}, hung_up=False).startswith("no decision")
