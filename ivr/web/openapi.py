"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Each feature describes its own paths and schemas beside its handlers and adds them with
``add_paths`` / ``add_schemas`` in its setup; this module merges them into one document.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ivr import __version__
from ivr.context import AppContext

OPENAPI_KEY = web.AppKey("openapi", dict)


def add_paths(app: web.Application, paths: dict[str, Any]) -> None:
    doc = app[OPENAPI_KEY]
    for path, ops in paths.items():
        doc["paths"].setdefault(path, {}).update(ops)


def add_schemas(app: web.Application, schemas: dict[str, Any]) -> None:
    app[OPENAPI_KEY]["components"]["schemas"].update(schemas)


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "details": {}},
}


async def serve(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


def setup(app: web.Application, ctx: AppContext) -> None:
    app[OPENAPI_KEY] = {
        "openapi": "3.1.0",
        "info": {"title": f"{ctx.settings.site_name} API", "version": __version__},
        "servers": [{"url": "/"}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness and database check", "operationId": "healthz",
                                 "responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {"Error": ERROR_SCHEMA}, "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "dasan_session"}}},
    }
    app.router.add_get("/openapi.json", serve)
