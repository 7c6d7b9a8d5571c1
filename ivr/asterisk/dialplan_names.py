"""The contracts' channel-variable names, for the dialplan template.

``extensions.conf.j2`` spells no variable that Python also uses: it writes ``{{ var.QUEUE }}``
where the dialplan names one (``Set(QUEUE=...)``), ``{{ ref.QUEUE }}`` where it reads one
(``${QUEUE}``), ``{{ result.HANGUP }}`` for a value of ``IVR_RESULT`` and
``{{ event.SURVEY }}`` for the name of a ``UserEvent`` to the AMI bridge, all from
``ivr.contracts``. A rename there changes the IVR and the dialplan together
(tests/test_dialplan_names.py).
"""

from __future__ import annotations

import re
from typing import Any

from ivr.contracts import DialplanEvent, IvrResult, Var

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")  # what Asterisk takes as a plain variable name
_EVENT = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")  # UserEvent's first argument (a comma ends it)


class VarRef:
    """``${NAME}``: a contract variable read in the dialplan. Not a string, so the renderer's
    guard against values that Asterisk would evaluate (``conf_value``) lets our own names pass."""

    def __init__(self, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a dialplan variable name")
        self.name = name

    def __str__(self) -> str:
        return "${" + self.name + "}"


def dialplan_names() -> dict[str, Any]:
    """``var``, ``ref``, ``result`` and ``event`` for the template's context."""
    return {"var": {v.name: VarRef(str(v)).name for v in Var},
            "ref": {v.name: VarRef(str(v)) for v in Var},
            "result": {r.name: str(r) for r in IvrResult},
            "event": {e.name: event_name(str(e)) for e in DialplanEvent}}


def event_name(name: str) -> str:
    """A ``UserEvent`` name, checked: letters and digits (the AMI bridge matches it whole)."""
    if not _EVENT.match(name):
        raise ValueError(f"{name!r} is not a UserEvent name")
    return name
