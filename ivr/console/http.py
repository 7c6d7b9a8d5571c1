"""Small helpers the console's JSON endpoints share (errors: ``ivr.web.errors.json_error``;
request bodies: pydantic models read with ``ivr.web.bodies.read_model``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ivr.web.auth import audit, current_user
from ivr.web.params import path_id


def int_match(request: web.Request, name: str = "id") -> int:
    return path_id(request, name)  # 404 for anything that cannot be a database id


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def username(request: web.Request) -> str:
    user = current_user(request)
    assert user is not None  # every caller is behind @requires
    return user.username


async def audit_request(request: web.Request, action: str, target: str = "", **data: Any) -> None:
    from ivr.console.render import ctx_of

    await audit(ctx_of(request), username(request), action, target, ip=request.remote, **data)
