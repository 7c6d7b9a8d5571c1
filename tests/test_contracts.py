"""The names in ivr/contracts.py are the only spelling of a bus topic, a job stream, a
dialplan variable or a dialplan user event in ``ivr``: a new string literal of one (exact, or an f-string starting with
a topic prefix such as ``f"chat.{id}"``) fails here with its file and line.

The Alembic migrations are left out: a migration is frozen history and must not import the
application's code. ``PENDING`` names the files another change is rewriting right now; each
entry must still hold such a literal (so the list cannot outlive its reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

from ivr import contracts
from ivr.contracts import CHAT_PREFIX, DialplanEvent, Stream, Topic, Var

PACKAGE = Path(contracts.__file__).resolve().parent
NAMES = {str(m) for m in (*Topic, *Stream, *Var, *DialplanEvent)}
PREFIXES = (CHAT_PREFIX,)
SKIPPED = {PACKAGE / "contracts.py"}
# Files another change is rewriting right now (none at the moment).
PENDING: set[str] = set()


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def literals(path: Path) -> list[str]:
    """``line: literal`` for each contract name spelled out in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value in NAMES:
                found.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and str(head.value).startswith(PREFIXES):
                found.append(f"{node.lineno}: f{str(head.value)!r}...")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p not in SKIPPED and "migrations" not in p.relative_to(PACKAGE).parts)


def test_no_topic_stream_or_variable_is_spelled_outside_the_contracts() -> None:
    offenders = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in PENDING:
            continue
        offenders += [f"ivr/{rel}:{hit}" for hit in literals(path)]
    assert not offenders, "use ivr.contracts instead of:\n" + "\n".join(offenders)


def test_the_check_finds_a_new_literal(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Publishes live.metrics."""\n'
                      'async def f(bus, i):\n'
                      '    await bus.publish("live.metrics", {})\n'
                      '    await bus.set_variable("IVR_RESULT", "queue")\n'
                      '    await bus.publish(f"chat.{i}", {})\n', encoding="utf-8")
    assert literals(sample) == ["3: 'live.metrics'", "4: 'IVR_RESULT'", "5: f'chat.'..."]


def test_pending_files_still_have_a_reason_to_be_listed() -> None:
    for rel in PENDING:
        path = PACKAGE / rel
        assert not path.exists() or literals(path), f"ivr/{rel} uses the contracts now: drop it from PENDING"


def test_the_values_are_the_strings_on_the_wire() -> None:
    assert f"{Topic.LIVE_METRICS}" == "live.metrics" and str(Var.IVR_RESULT) == "IVR_RESULT"
    assert contracts.chat_topic(7) == "chat.7" and contracts.agent_chat_topic("kim") == "chat.agent.kim"
    assert len(NAMES) == len(Topic) + len(Stream) + len(Var) + len(DialplanEvent)  # no name means two things
