"""Clear JSON errors for the API, the webhooks and the chat endpoints.

Every error on those paths is ``{"error": "...", "details"?: ...}`` with the right status:
aiohttp's own 404/405/413, ``json_error`` raised by handlers, and any unexpected exception
(logged with its traceback, answered 500 without internals). Other paths (HTML pages,
Open311's own error documents) are left as their handlers made them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import http_exceptions, web

from ivr.context import AppContext

log = logging.getLogger("dasan.web")
JSON_PREFIXES = ("/api/", "/webhooks/", "/chat/", "/openapi.json", "/healthz")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Headers an error keeps (405's Allow, 429's and 503's Retry-After, 401's WWW-Authenticate).
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class JsonError(web.HTTPException):
    def __init__(self, status: int, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        payload: dict[str, Any] = {"error": message}
        if details is not None:
            payload["details"] = details
        super().__init__(text=json.dumps(payload, ensure_ascii=False), content_type="application/json",
                         headers=headers)


def json_error(status: int, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JsonError:
    """An exception to raise from a handler: ``raise json_error(400, "body must be JSON")``."""
    return JsonError(status, message, details, headers)


def wants_json(path: str) -> bool:
    return path.startswith(JSON_PREFIXES)


def _as_json(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        raise exc
    headers = {k: exc.headers[k] for k in KEPT_HEADERS if k in exc.headers}
    if exc.content_type == "application/json":
        return web.Response(text=exc.text, status=exc.status, content_type="application/json", headers=headers)
    text = (exc.text or "").strip()
    # aiohttp's default bodies look like "404: Not Found"; keep the explanation, drop the code.
    message = text.split(": ", 1)[1] if text.startswith(f"{exc.status}: ") else (text or exc.reason)
    return web.json_response({"error": message or exc.reason}, status=exc.status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not wants_json(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _as_json(exc)
    except http_exceptions.HttpProcessingError as exc:
        # A malformed body found while a handler parsed it (bad multipart headers, ...).
        status = exc.code if 400 <= exc.code < 500 else 400
        return web.json_response({"error": f"malformed request: {exc.message}"[:500]}, status=status)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error; the request was not processed"}, status=500)


def setup(app: web.Application, ctx: AppContext) -> None:
    # Outermost, so errors of every other middleware (session, limits) become JSON too.
    app.middlewares.insert(0, error_middleware)
