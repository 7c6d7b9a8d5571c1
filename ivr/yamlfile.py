"""YAML loading that remembers where every key came from.

Configuration and menus are data edited by people; when a value is wrong the error must
name the file and line, not a Python traceback. ``load`` returns the plain data plus a map
from key path to line number, and ``validate`` turns pydantic errors into ``DataError``
messages of the form ``file:line: key.path: problem``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class DataError(ValueError):
    """A configuration or menu file is wrong; ``problems`` lists each ``file:line: msg``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class Located:
    """Parsed YAML data with the line (1-based) of every mapping key and sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """Line of the deepest known prefix of ``loc`` (1 when nothing is known)."""
        for cut in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:cut]))
            if line is not None:
                return line
        return 1

    def where(self, loc: Loc) -> str:
        return f"{self.path}:{self.line_of(loc)}"


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int], loader: yaml.SafeLoader) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                key = str(key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*loc, key), lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            items.append(_construct(item, (*loc, i), lines, loader))
        return items
    return loader.construct_object(node, deep=True)


def loads(text: str, path: Path | str = "<string>") -> Located:
    path = Path(path)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # control characters are refused before parsing
        line = text.count("\n", 0, exc.position) + 1
        raise DataError([f"{path}:{line}: not a YAML text: {exc.reason} (character {exc.character!r})"]) from None
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        data = {} if node is None else _construct(node, (), lines, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise DataError([f"{path}:{line}: YAML syntax error: {exc.problem or exc}"]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise DataError([f"{path}:{line}: not a YAML text: {exc.reason} (character {exc.character!r})"]) from None
    except yaml.YAMLError as exc:
        raise DataError([f"{path}:1: YAML error: {exc}"]) from None
    except RecursionError:
        # An alias that contains itself (&a [*a]) has no finite value.
        raise DataError([f"{path}:1: a YAML alias refers to itself (recursive data is not allowed)"]) from None
    finally:
        loader.dispose()
    return Located(path, data, lines)


def load(path: Path | str) -> Located:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError([f"{path}: file not found"]) from None
    except UnicodeDecodeError as exc:
        raise DataError([f"{path}: not UTF-8 text ({exc.reason})"]) from None
    return loads(text, path)


def _expected(err: Any) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f" (expected {ctx['expected']})"
    if err["type"] == "extra_forbidden":
        return " (unknown key; check the spelling)"
    return ""


def format_errors(exc: ValidationError, located: Located, prefix: Loc = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        problems.append(f"{located.where(loc)}: {key}: {err['msg']}{_expected(err)}")
    return problems


def validate(model: type[M], located: Located, data: Any = None, prefix: Loc = ()) -> M:
    """Validate ``data`` (default: the whole file) against ``model``; errors name file:line."""
    try:
        return model.model_validate(located.data if data is None else data)
    except ValidationError as exc:
        raise DataError(format_errors(exc, located, prefix)) from None
