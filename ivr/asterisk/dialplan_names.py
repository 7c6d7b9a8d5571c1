"""The contracts' channel-variable names, for the dialplan template.

``extensions.conf.j2`` spells no variable that Python also uses: it writes ``{{ var.QUEUE }}``
where the dialplan names one (``Set(QUEUE=...)``), ``{{ ref.QUEUE }}`` where it reads one
(``${QUEUE}``) and ``{{ result.HANGUP }}`` for a value of ``IVR_RESULT``, all from
``ivr.contracts``. A rename there changes the IVR and the dialplan together
(tests/test_dialplan_names.py).
"""

from __future__ import annotations

import re
from typing import Any

from ivr.contracts import IvrResult, Var

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")  # what Asterisk takes as a plain variable name


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
    """``var``, ``ref`` and ``result`` for the template's context."""
    return {"var": {v.name: VarRef(str(v)).name for v in Var},
            "ref": {v.name: VarRef(str(v)) for v in Var},
            "result": {r.name: str(r) for r in IvrResult}}
