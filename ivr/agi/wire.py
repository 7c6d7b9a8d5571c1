"""The one encoder of AGI command lines, and Asterisk's own reading of them.

Asterisk reads an AGI command as one line (up to LF) and splits it into arguments with
``parse_args`` in res/res_agi.c: spaces and tabs separate arguments, ``"`` toggles quoting (a
quote after whitespace starts an argument, so ``""`` is an empty argument), and ``\\`` makes the
next character literal. A sound name or value sent bare with a space becomes two arguments, and
one with a line break becomes a second command (``EXEC System ...``). So every argument that
comes from data goes through :func:`agi_arg` (refuses CR, LF and NUL; quotes and escapes),
names and numbers through :func:`agi_word`, and every line is checked once more by
:func:`agi_line` where it is written (``AgiStream.command``, the process AGI's writer).

:func:`parse_args` is a line-by-line port of Asterisk's parser, for the simulated caller and for
tests that check an argument arrives as exactly one argument.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\r\n\x00]")
# A word Asterisk reads as one argument with no quoting: variable names such as
# CHANNEL(language), numbers, escape-digit lists. Checked with fullmatch ('$' allows a final '\n').
_WORD = re.compile(r"^[A-Za-z0-9_()#*.+-]+$")
MAX_ARGS = 128  # res_agi.c: MAX_ARGS


class UnsafeAgiValue(ValueError):
    """A value would add an AGI command (CR, LF, NUL) or is not a plain word where one is needed."""


def _check(text: str, what: str) -> str:
    if _UNSAFE.search(text):
        raise UnsafeAgiValue(f"{what}: line breaks and NUL cannot be sent to Asterisk: {text[:60]!r}")
    return text


def agi_arg(value: str) -> str:
    """One AGI argument, quoted and escaped so Asterisk reads exactly ``value``."""
    text = _check(value, "AGI argument")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def agi_word(value: str | int) -> str:
    """A name or number sent bare: it must be one plain word."""
    text = str(value)
    if not _WORD.fullmatch(text):
        raise UnsafeAgiValue(f"AGI word {text[:60]!r} is not a plain name or number")
    return text


def agi_line(text: str) -> str:
    """A whole command line, refused if it holds a line break or NUL (it would be two commands)."""
    return _check(text, "AGI command")


def parse_args(line: str) -> list[str]:
    """The arguments Asterisk's res_agi.c ``parse_args`` reads from one command line."""
    args: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                cur = []
                args.append("")
                whitespace = False
            escaped = False
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                args[-1] = "".join(cur)
            cur = None
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            if len(args) >= MAX_ARGS - 1:  # Asterisk: "Too many arguments, truncating"
                continue
            cur = []
            args.append("")
            whitespace = False
        assert cur is not None
        cur.append(ch)
        escaped = False
    if cur is not None:
        args[-1] = "".join(cur)
    return args
