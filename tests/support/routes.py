"""Every HTTP route of an aiohttp application, as registered by whichever features are present,
with the roles its handler declares (``@requires``). Used by tests/test_access_routes.py and
tests/test_fuzz_routes.py, which walk them all."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

_PARAMETER = re.compile(r"\{([^{}]+(?:\{[^{}]*\}[^{}]*)*)\}")  # {name} or {name:regex}


@dataclass(frozen=True)
class AppRoute:
    method: str
    template: str  # as registered, such as /api/console/contacts/{id}
    roles: tuple[str, ...] | None  # the handler's @requires roles; None when it declares none

    def url(self, base: str, value: str = "1") -> str:
        """``base`` + the template with every parameter filled: ``{fmt}`` with json, others with ``value``."""
        def fill(m: re.Match[str]) -> str:
            return "json" if m.group(1).split(":")[0] == "fmt" else value
        return base + _PARAMETER.sub(fill, self.template)


def app_routes(app: web.Application, skip: tuple[str, ...] = ("HEAD", "OPTIONS")) -> list[AppRoute]:
    """The app's routes but those whose method is in ``skip``."""
    out = []
    for resource in app.router.resources():
        info = resource.get_info()
        template = info.get("formatter") or info.get("path") or info.get("prefix")
        if not template:
            continue
        for route in resource:
            if route.method in skip:
                continue
            out.append(AppRoute(route.method, str(template), getattr(route.handler, "roles", None)))
    return out
