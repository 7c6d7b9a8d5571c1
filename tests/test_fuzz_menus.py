"""Fuzzing the YAML menu loader with broken copies of the real menu file.

Hypothesis damages ``ivr/menus/main.yaml`` the ways people do when editing it: a line deleted
or doubled, indentation shifted, a token replaced by other text (Korean, tabs, YAML syntax,
anchors and aliases), the file cut short, a node renamed so a ``goto`` points nowhere.
Property: ``load_menus`` either loads a menu set that still satisfies its own checks or raises
``DataError`` whose every problem names the file and a line inside it; never any other
exception. (A billion-laughs alias bomb is among the inputs: it must not hang.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ivr.datafolder import DEFAULT_MENUS
from ivr.engine.menu import MenuNode, load_menus
from ivr.yamlfile import DataError

MENU = DEFAULT_MENUS / "main.yaml"  # shipped in the package: missing is a failure

TOKENS = ["", " ", "\t", ":", "- ", "{", "}", "[", "]", "&a", "*a", "!!python/object:os.system", "%", "@",
          "'", '"', "#", "|", ">", "~", "null", "true", "1e9", "-1", "0x10", "한국어", "\ufeff", "---",
          "...", "goto: nowhere", "kind: nonsense", "options: 5", "\u2028"]
# Control characters have their own test below (test_control_characters_are_a_data_error).
TEXT = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=30)
BOMB = ('a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n'
        'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n')


@st.composite
def damaged(draw: st.DrawFn) -> str:
    lines = MENU.read_text(encoding="utf-8").split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "double", "indent", "dedent", "token", "cut", "rename", "insert"]))
        if how == "delete":
            del lines[i]
        elif how == "double":
            lines.insert(i, lines[i])
        elif how == "indent":
            lines[i] = "  " + lines[i]
        elif how == "dedent":
            lines[i] = lines[i][2:]
        elif how == "token":
            words = re.split(r"(\s+)", lines[i])
            j = draw(st.integers(0, max(0, len(words) - 1)))
            words[j] = draw(st.one_of(st.sampled_from(TOKENS), TEXT))
            lines[i] = "".join(words)
        elif how == "cut":
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
        elif how == "rename":
            lines[i] = re.sub(r"^(  )([a-z][a-z-]*):", r"\1\2-renamed:", lines[i])
        else:
            lines.insert(i, draw(st.one_of(st.sampled_from(TOKENS), TEXT)))
        if not lines:
            lines = [""]
    return "\n".join(lines)


def _check_outcome(path: Path, text: str) -> None:
    n_lines = text.count("\n") + 1
    try:
        menus = load_menus(path)
    except DataError as exc:
        assert exc.problems, "an error with no problem listed"
        for problem in exc.problems:
            m = re.match(rf"^{re.escape(str(path))}(?::(\d+))?: \S", problem)
            assert m, f"problem does not name the file: {problem!r}"
            if m.group(1):
                assert 1 <= int(m.group(1)) <= n_lines, f"line outside the file: {problem!r}"
        return
    # Loaded: what the engine relies on holds.
    assert menus.start in menus.nodes
    for node in menus.nodes.values():
        if isinstance(node, MenuNode):
            assert node.options and "*" not in node.options


def test_damaged_menu_files(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"

    @hsettings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(damaged())
    def run(text: str) -> None:
        path.write_text(text, encoding="utf-8")
        _check_outcome(path, text)

    run()


def test_the_real_menu_loads() -> None:
    _check_outcome(MENU, MENU.read_text(encoding="utf-8"))


@pytest.mark.parametrize("text", [BOMB, "", "---\n---\n", "- a\n- b\n", "nodes: !!binary aGk=\n", "\ufeffstart: x\n",
                                  "a: !!python/object/apply:os.system ['true']\n", "&a [*a]\n"])
def test_hostile_documents(tmp_path: Path, text: str) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(text, encoding="utf-8")
    _check_outcome(path, text)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_bytes(MENU.read_bytes()[:200] + b"\xff\xfe\x80" + MENU.read_bytes()[200:400])
    with pytest.raises(DataError) as raised:
        load_menus(path)
    assert str(path) in raised.value.problems[0]


@pytest.mark.parametrize("char", ["\x00", "\x1f", "\x7f"])
def test_control_characters_are_a_data_error(tmp_path: Path, char: str) -> None:
    """A stray control character (pasted from a word processor) must give file:line, not a crash."""
    path = tmp_path / "main.yaml"
    text = MENU.read_text(encoding="utf-8").replace("start: main", f"start: ma{char}in", 1)
    path.write_text(text, encoding="utf-8")
    _check_outcome(path, text)
