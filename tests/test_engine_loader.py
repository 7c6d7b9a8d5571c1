"""Menu files are checked on load; every error names the file and the line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.agi.caller import ScriptedCaller
from ivr.agi.server import FastAgiServer
from ivr.cli import main
from ivr.config import Settings
from ivr.context import AppContext
from ivr.engine.menu import AnswerNode, LookupNode, MenuNode, QueueNode, load_menus
from ivr.engine.runtime import MENU_FILE, IvrRuntime, load_checked
from ivr.yamlfile import DataError
from tests.support.ivr_harness import MENUS_DIR, QUEUES_DIR
from tests.support.waiting import eventually

DEFAULT = (MENUS_DIR / MENU_FILE).read_text(encoding="utf-8")


def broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """The default menu with one edit; returns the file and the line of the edit."""
    assert old in DEFAULT, old
    text = DEFAULT.replace(old, new, 1)
    path = tmp_path / "main.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text[: text.index(new)].count("\n") + 1 + new[: len(new) - len(new.lstrip("\n"))].count("\n")


def problems(path: Path) -> list[str]:
    with pytest.raises(DataError) as exc:
        load_menus(path)
    return exc.value.problems


def test_default_menus_load_and_match_the_queues() -> None:
    menus, queues = load_checked(MENUS_DIR, QUEUES_DIR)
    assert menus.languages == ["ko", "en", "zh", "ja", "vi", "mn"]
    kinds = {type(node) for node in menus.nodes.values()}
    assert kinds == {MenuNode, QueueNode, AnswerNode, LookupNode}
    main_menu = menus.nodes["main"]
    assert isinstance(main_menu, MenuNode) and set(main_menu.options) == set("0123456789") - {"7", "8"}
    assert all(menus.queues[lang] in queues.queues for lang in menus.languages)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('      "4": tax\n', '      "4": taxes\n', "nodes.main.options.4: unknown node 'taxes'"),
    ('      "4": tax\n', '      "x": tax\n', "is not a telephone key"),
    ('      "4": tax\n', '      "*": tax\n', "always repeats"),
    ("    handler: service_request_status\n", "    handlr: service_request_status\n", "unknown key"),
    ("    prompt: transport-menu\n", "    prompt: transport-menuu\n",
     "nodes.transport.prompt: unknown prompt 'transport-menuu'"),
    ("      \"1\": {goto: main, language: en}\n", "      \"1\": {goto: main, language: fr}\n",
     "unknown language 'fr'"),
    ("    kind: lookup\n", "    kind: lookup-table\n", "nodes.status"),
    ("start: main\n", "start: [main\n", "YAML syntax error"),
], ids=["unknown-node", "not-a-key", "star-repeats", "unknown-field", "unknown-prompt", "unknown-language",
        "unknown-kind", "yaml-syntax"])  # plain ids: a test can be named on the command line
def test_errors_name_file_and_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    path, line = broken(tmp_path, old, new)
    found = problems(path)
    assert any(message in p for p in found), found
    if "YAML" not in message:
        assert any(p.startswith(f"{path}:{line}:") for p in found), (line, found)


def test_missing_translation_and_engine_prompt(tmp_path: Path) -> None:
    path, _ = broken(tmp_path, '    vi: "Lựa chọn không hợp lệ."\n', "")
    text = path.read_text(encoding="utf-8")
    line = text[: text.index("  invalid:\n")].count("\n") + 1
    assert problems(path) == [f"{path}:{line}: prompts.invalid: no vi text"]
    path, _ = broken(tmp_path, "  survey-thanks:\n", "  survey-thanked:\n")
    assert any("missing prompt 'survey-thanks'" in p for p in problems(path))


def test_unknown_queue_is_refused_with_its_line(tmp_path: Path) -> None:
    path, line = broken(tmp_path, "  mn: mn\n", "  mn: mongolian\n")
    (tmp_path / "menus").mkdir()
    path.rename(tmp_path / "menus" / "main.yaml")
    with pytest.raises(DataError) as exc:
        load_checked(tmp_path / "menus", QUEUES_DIR)
    assert exc.value.problems == [f"{tmp_path / 'menus' / 'main.yaml'}:{line}: queues.mn: unknown queue 'mongolian'"]


def test_cli_reports_a_broken_menu(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, line = broken(tmp_path, '      "4": tax\n', '      "4": taxes\n')
    monkeypatch.setenv("DASAN__AGI__MENUS_DIR", str(tmp_path))
    monkeypatch.setenv("DASAN__DATA_DIR", str(tmp_path))
    assert main(["call", "--digits", "4"]) == 2
    assert f"{path}:{line}: nodes.main.options.4: unknown node 'taxes'" in capsys.readouterr().err


async def test_an_edited_menu_reaches_the_next_call_without_a_restart(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """The admin's edit (or a broken one) while the FastAGI server runs: no restart, no dropped call."""
    ctx = await AppContext.create(settings)
    runtime = IvrRuntime.from_settings(ctx)
    server = FastAgiServer(runtime.routes(), "127.0.0.1", 0)
    (host, port), *_ = await server.start()
    menu_file = settings.agi.menus_dir / MENU_FILE
    try:
        before = await ScriptedCaller("1 2").call(host, port)
        assert before.variables["TOPIC"] == "transport"
        # A call already in the menu when the file changes finishes on the menus it started with.
        slow = ScriptedCaller("1 2", delay=0.2)
        in_progress = asyncio.ensure_future(slow.call(host, port))
        await eventually(lambda: slow.log.heard, "the slow call in the menu")
        menu_file.write_text(DEFAULT.replace('"1": transport\n', '"1": waste\n', 1), encoding="utf-8")
        running = runtime.engine
        # The files are looked at (at most once a second) when a call asks for the engine.
        await eventually(lambda: runtime.current() is not running, "the edited menu loaded")
        after = await ScriptedCaller("1 2").call(host, port)
        assert after.variables["TOPIC"] == "waste", after.variables
        assert (await in_progress).variables["TOPIC"] == "transport"
        # A broken edit keeps the running menus (and the calls going).
        caplog.clear()
        menu_file.write_text(DEFAULT.replace("start: main", "start: nowhere", 1), encoding="utf-8")
        await eventually(lambda: runtime.current() and "do not load" in caplog.text, "the broken menu refused")
        still = await ScriptedCaller("1 2").call(host, port)
        assert still.variables["TOPIC"] == "waste" and still.variables["IVR_RESULT"] == "queue"
    finally:
        await server.stop()
        await runtime.engine.writer.flush()
        await ctx.close()
