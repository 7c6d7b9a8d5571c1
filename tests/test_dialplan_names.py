"""The dialplan and the Python side name their shared channel variables and user events once,
in ivr/contracts.py.

The template (ivr/asterisk/dialplan/extensions.conf.j2) takes every such name from the render
context (``ivr.asterisk.dialplan_names``), so renaming a variable in contracts.py renames it in
the dialplan too; and no Python module spells a variable the rendered dialplan sets or reads
(or one of its UserEvent names) except through ``Var`` (``DialplanEvent``) (tests/test_contracts.py checks the exact literals; this one also finds
them inside longer strings such as ``"SPY_TARGET=PJSIP/..."``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from ivr import contracts
from ivr.asterisk import render as render_module
from ivr.asterisk.dialplan_names import VarRef, dialplan_names, event_name
from ivr.asterisk.render import render
from ivr.config import AsteriskNode, DasanNode, Settings
from ivr.contracts import DialplanEvent, IvrResult, Var
from tests.test_contracts import PENDING as CONTRACTS_PENDING

PACKAGE = Path(contracts.__file__).resolve().parent
TEMPLATE = PACKAGE / "asterisk" / "dialplan" / "extensions.conf.j2"
# Set for the call's record (AMI VarSet), never read by the dialplan: by the IVR (`dasan call`
# prints it), and by the callback dialer's Originate.
NOT_IN_DIALPLAN = {Var.TOPIC, Var.CALLBACK_ID, Var.CITIZEN_ID}
# Asterisk's own variables (set by Asterisk or its applications): their names are Asterisk's.
# Files another change is rewriting now (tests/test_contracts.py's list, which checks that
# each still has a reason to be there).
PENDING = CONTRACTS_PENDING
ASTERISK_OWN = {"AGISTATUS", "QUEUESTATUS", "ANSWEREDTIME", "EPOCH", "EXTEN", "CHANNEL", "SPYGROUP",
                "QUEUE_MAX_PENALTY"}


def _settings(tmp_path: Path) -> Settings:
    s = Settings()
    s.data_dir, s.recordings.dir = tmp_path / "data", tmp_path / "recordings"
    return s


def dialplans(tmp_path: Path) -> dict[str, str]:
    """extensions.conf with every optional part rendered: plain, live partials, browser calls,
    one node of a cluster (the second IVR server)."""
    plain = _settings(tmp_path)
    live = _settings(tmp_path)
    live.speech.live_listen = "127.0.0.1:9092"
    web = _settings(tmp_path)
    web.webrtc.enabled, web.webrtc.video_slots, web.webrtc.voice_slots = True, 2, 2
    cluster = _settings(tmp_path)
    cluster.cluster.kamailio.host = "10.0.0.10"
    cluster.cluster.asterisk_nodes = [AsteriskNode(name="ast1", sip_host="10.0.0.11", ami_host="10.0.0.11"),
                                      AsteriskNode(name="ast2", sip_host="10.0.0.12", ami_host="10.0.0.12")]
    cluster.cluster.dasan_nodes = [DasanNode(name="d1", agi_host="10.0.0.21"), DasanNode(name="d2", agi_host="10.0.0.22")]
    return {"plain": render(plain)["extensions.conf"], "live": render(live)["extensions.conf"],
            "webrtc": render(web)["extensions.conf"],
            "cluster": render(cluster, node="ast1")["extensions.conf"]}


def variables(dialplan: str) -> set[str]:
    """Every variable the dialplan sets (Set, Read) or reads (${NAME}, not ${FUNCTION(...)}),
    without the inheritance prefix (__NAME)."""
    code = "\n".join(line.split(";", 1)[0] for line in dialplan.splitlines())  # no comments
    read = {m[1] for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_(])", code)}
    set_ = {m[1] for m in re.finditer(r"\bSet\((?:__?)?([A-Za-z_][A-Za-z0-9_]*)=", code)}
    read_app = {m[1] for m in re.finditer(r"\bRead\(([A-Za-z_][A-Za-z0-9_]*),", code)}
    return read | set_ | read_app


def user_events(dialplan: str) -> set[str]:
    """The names of the UserEvents the dialplan sends to the AMI bridge."""
    code = "\n".join(line.split(";", 1)[0] for line in dialplan.splitlines())
    return {m[1] for m in re.finditer(r"\bUserEvent\(([^,)]+)", code)}


def _python_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_the_template_spells_no_contract_variable() -> None:
    """Outside its {{ }} / {% %} expressions the template holds no contract name (nor a value
    of IVR_RESULT compared with it, nor a UserEvent name)."""
    source = TEMPLATE.read_text(encoding="utf-8")
    offenders = []
    for number, line in enumerate(source.splitlines(), 1):
        plain = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", line)
        for name in Var:
            if re.search(rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])", plain):
                offenders.append(f"extensions.conf.j2:{number}: {name}")
        for value in IvrResult:
            if f'= "{value}"' in plain:
                offenders.append(f"extensions.conf.j2:{number}: IVR_RESULT value {value!r}")
        for event in DialplanEvent:
            if event in plain:
                offenders.append(f"extensions.conf.j2:{number}: UserEvent {event}")
    assert not offenders, "take these from the render context (var/ref/result/event):\n" + "\n".join(offenders)


def test_the_dialplan_uses_every_contract_variable_and_python_no_other(tmp_path: Path) -> None:
    used = set().union(*(variables(text) for text in dialplans(tmp_path).values()))
    names = {str(v) for v in Var}
    # every contract variable but the IVR-only one is set or read by the dialplan
    assert names - used == {str(v) for v in NOT_IN_DIALPLAN}, names - used
    # a variable of the dialplan spelled in a Python string (outside contracts.py) must be a
    # contract name used through Var: none is spelled out
    ours = used - ASTERISK_OWN
    events = set().union(*(user_events(text) for text in dialplans(tmp_path).values()))
    assert events == {str(e) for e in DialplanEvent}  # each UserEvent the dialplan sends is named there
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.as_posix() == "contracts.py" or "migrations" in rel.parts or rel.as_posix() in PENDING:
            continue
        for line, text in _python_strings(path):
            for token in re.findall(r"[A-Z][A-Z0-9_]*[A-Z0-9]", text):
                if token in ours:
                    offenders.append(f"ivr/{rel.as_posix()}:{line}: {token} in {text[:60]!r}")
            offenders += [f"ivr/{rel.as_posix()}:{line}: {e} in {text[:60]!r}" for e in events if e in text]
    assert not offenders, ("name these in ivr/contracts.py (Var, DialplanEvent) and use the constant:\n"
                           + "\n".join(offenders))
    # the check reads what it should: the dialplan's own names are found in it
    assert {"QUEUE", "IVR_RESULT", "CONTACT_ID", "SPY_TARGET", "SURVEY_SCORE", "RECORDING", "Q_TIMEOUT"} <= used


def test_a_rename_in_the_contracts_renames_the_dialplan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every contract variable renamed (X_<name>) in the names the renderer passes: the rendered
    dialplan is the same text with exactly those names replaced."""
    before = dialplans(tmp_path)
    shipped = dialplan_names()

    def renamed() -> dict[str, Any]:
        return {"var": {k: f"X_{v}" for k, v in shipped["var"].items()},
                "ref": {k: VarRef(f"X_{v.name}") for k, v in shipped["ref"].items()},
                "result": {k: f"x-{v}" for k, v in shipped["result"].items()},
                "event": {k: f"X{v}" for k, v in shipped["event"].items()}}

    monkeypatch.setattr(render_module, "dialplan_names", renamed)
    after = dialplans(tmp_path)
    for variant, text in before.items():
        expected = text
        for name in sorted((str(v) for v in Var), key=len, reverse=True):
            expected = re.sub(rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])", f"X_{name}", expected)
        for value in IvrResult:  # compared in GotoIf, and named in comments as IVR_RESULT=<value>
            expected = expected.replace(f'= "{value}"]', f'= "x-{value}"]')
            expected = re.sub(rf"X_IVR_RESULT={value}\b", f"X_IVR_RESULT=x-{value}", expected)
        for event in DialplanEvent:  # sent as UserEvent(<name>,...), and named in a comment
            expected = re.sub(rf"\bUserEvent([( ]){event}\b", rf"UserEvent\g<1>X{event}", expected)
        assert after[variant] == expected, variant
        assert "${X_QUEUE}" in after[variant] and "${QUEUE}" not in after[variant]
        assert "UserEvent(XDasanSurvey," in after[variant] and "DasanSurvey," not in after[variant].replace("XDasan", "")


def test_a_variable_name_is_checked() -> None:
    assert str(VarRef("QUEUE")) == "${QUEUE}"
    with pytest.raises(ValueError, match="not a dialplan variable name"):
        VarRef("QUEUE}${SHELL")
    assert event_name("DasanSurvey") == "DasanSurvey"
    with pytest.raises(ValueError, match="not a UserEvent name"):
        event_name("DasanSurvey,Score: 9")
