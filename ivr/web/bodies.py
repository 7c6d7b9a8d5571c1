"""One way to read a request body: a pydantic model, and a 400 that names each bad field.

``await read_model(request, Model)`` for a JSON body; ``parse_model(Model, raw)`` when the
raw bytes are needed first (a webhook checks its signature over them). A body that does not
match answers ``{"error": "the request body does not match the schema", "details":
[{"field", "problem"}, ...]}`` through ``json_error``.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ivr.web.errors import json_error

M = TypeVar("M", bound=BaseModel)


def problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]


def parse_model(model: type[M], raw: bytes | str) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise json_error(400, "the request body does not match the schema", problems(exc)) from None


async def read_model(request: web.Request, model: type[M]) -> M:
    return parse_model(model, await request.read())
