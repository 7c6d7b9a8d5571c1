"""Named lookup handlers for ``lookup`` menu nodes (self-service "where is my request?").

A handler gets the digits the caller keyed in and the caller's language, and returns what to
read out: a plain ``str`` (logged; its digit runs are said with SAY DIGITS after the generic
``lookup-number`` prompt) or a ``Spoken``, a list of parts said with real Asterisk commands:
a prompt file, SAY DIGITS, SAY ALPHA. Other features register their own::

    from ivr.engine import lookups
    lookups.register("service_request_status", my_handler)

``service_request_status`` has a built-in fallback that finds a contact by its tracking
number, so the menu works before (or without) the Open311 module.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select

from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Contact


@dataclass(frozen=True)
class Part:
    kind: Literal["prompt", "digits", "alpha"]
    value: str


@dataclass
class Spoken:
    text: str  # the whole answer as text (console, logs, `dasan call`)
    parts: list[Part] = field(default_factory=list)


@dataclass(frozen=True)
class LookupRequest:
    digits: str
    language: str
    db: Database
    contact_id: int | None = None
    settings: Settings = field(default_factory=Settings)  # the site's (data folder, time zone)


LookupHandler = Callable[[LookupRequest], Awaitable["Spoken | str"]]
_REGISTRY: dict[str, LookupHandler] = {}


def register(name: str, handler: LookupHandler) -> None:
    """Add or replace the handler called by ``lookup`` nodes with ``handler: <name>``."""
    _REGISTRY[name] = handler


def get(name: str) -> LookupHandler | None:
    return _REGISTRY.get(name) or _BUILTIN.get(name)


def names() -> set[str]:
    return set(_REGISTRY) | set(_BUILTIN)


def as_spoken(answer: Spoken | str) -> Spoken:
    if isinstance(answer, Spoken):
        return answer
    parts = [Part("prompt", "lookup-number")]
    parts += [Part("digits", run) for run in re.findall(r"\d+", answer)]
    return Spoken(answer, parts)


async def contact_status(request: LookupRequest) -> Spoken:
    """Fallback for ``service_request_status``: the contact with this tracking number."""
    digits = "".join(ch for ch in request.digits if ch.isdigit())
    status = None
    if digits:
        async with request.db.session() as session:
            status = (
                await session.execute(select(Contact.status).where(Contact.tracking_number == digits))
            ).scalar_one_or_none()
    if status is None:
        return Spoken(f"{digits}: not found", [Part("prompt", "lookup-not-found")])
    return Spoken(
        f"{digits}: {status.value}",
        [Part("prompt", "lookup-number"), Part("digits", digits), Part("prompt", f"status-{status.value}")],
    )


_BUILTIN: dict[str, LookupHandler] = {"service_request_status": contact_status}
