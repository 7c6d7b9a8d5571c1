"""One way to read a request body: a pydantic model, and a 400 that names each bad field.

Every JSON body of the console, the browser-call (WebRTC) pages and the APIs is a ``Body``
model read with ``await read_model(request, Model)``; ``parse_model(Model, raw)`` when the
raw bytes are needed first (a webhook checks its signature over them); ``parse_fields(Model,
form)`` for the text fields of a multipart upload. A body that is not
JSON, or does not match, answers 400 ``{"error": "the request body does not match the schema:
<field>: <problem>", "details": [{"field", "problem"}, ...]}`` through ``json_error``, before
the handler does anything. Rules that need the database or the site (a known queue, a
scorecard's criteria) stay in the handler and answer with ``json_error`` too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from ivr.web.errors import json_error

M = TypeVar("M", bound=BaseModel)
SCHEMA_MISMATCH = "the request body does not match the schema"


class Body(BaseModel):
    """A JSON request body: JSON's own types only (no "5" for 5, no 1 for true); fields the
    model does not name are ignored (older pages may send more)."""

    model_config = ConfigDict(strict=True)


def one_of(choices: Sequence[str], korean: str = "") -> AfterValidator:
    """A text field's rule, ``name: Annotated[str, one_of(CHOICES)]``: the value is one of
    ``choices``, else the field's problem is "one of a, b, c" (then `` / korean`` when given)."""
    said = f" / {korean}" if korean else ""

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}{said}")
        return value

    return AfterValidator(check)


def problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]} for e in exc.errors()]


def _mismatch(exc: ValidationError) -> web.HTTPException:
    found = problems(exc)
    first = found[0]
    return json_error(400, f"{SCHEMA_MISMATCH}: {first['field']}: {first['problem']} "
                           f"/ 요청 본문이 형식에 맞지 않습니다 ({first['field']})", found)


def parse_model(model: type[M], raw: bytes | str) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _mismatch(exc) from None


def parse_fields(model: type[M], form: Mapping[str, object]) -> M:
    """The text fields of a form (files and repeated names aside), checked like a JSON body."""
    try:
        return model.model_validate({name: value for name, value in form.items() if isinstance(value, str)})
    except ValidationError as exc:
        raise _mismatch(exc) from None


async def read_model(request: web.Request, model: type[M]) -> M:
    return parse_model(model, await request.read())
