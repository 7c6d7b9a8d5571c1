"""Clear JSON errors for the API, the webhooks and the chat endpoints.

Every error on those paths is ``{"error": "...", "details"?: ...}`` with the right status:
aiohttp's own 404/405/413, ``json_error`` raised by handlers, and any unexpected exception
(logged with its traceback, answered 500 without internals). A feature with its own error
document registers it for its path prefix (``ERROR_FORMS``; Open311's ``errors`` list under
``/open311/``), so the same errors — 404, 405, 413, 429, a malformed body — come back in that
form. Other paths (HTML pages) are left as their handlers made them.
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
# (request, status, message) -> the error in a feature's own document
ErrorForm = Callable[[web.Request, int, str], web.StreamResponse]
ERROR_FORMS = web.AppKey("error_forms", dict[str, ErrorForm])  # path prefix -> its error form
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


def _message(exc: web.HTTPException) -> str:
    text = (exc.text or "").strip()
    if exc.content_type == "application/json":
        try:
            return str(json.loads(text).get("error") or exc.reason)
        except (ValueError, AttributeError):
            return exc.reason
    # aiohttp's default bodies look like "404: Not Found"; keep the explanation, drop the code.
    return (text.split(": ", 1)[1] if text.startswith(f"{exc.status}: ") else text) or exc.reason


def _json_form(_request: web.Request, status: int, message: str) -> web.StreamResponse:
    return web.json_response({"error": message}, status=status)


def _as_form(request: web.Request, exc: web.HTTPException, form: ErrorForm) -> web.StreamResponse:
    if exc.status < 400:
        raise exc
    if form is _json_form and exc.content_type == "application/json":
        response: web.StreamResponse = web.Response(text=exc.text, status=exc.status, content_type="application/json")
    else:
        response = form(request, exc.status, _message(exc))
    for key in KEPT_HEADERS:
        if key in exc.headers:
            response.headers[key] = exc.headers[key]
    return response


def _form_for(request: web.Request) -> ErrorForm | None:
    for prefix, form in request.app.get(ERROR_FORMS, {}).items():
        if request.path.startswith(prefix):
            return form
    return _json_form if wants_json(request.path) else None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    form = _form_for(request)
    if form is None:
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _as_form(request, exc, form)
    except http_exceptions.HttpProcessingError as exc:
        # A malformed body found while a handler parsed it (bad multipart headers, ...).
        status = exc.code if 400 <= exc.code < 500 else 400
        return form(request, status, f"malformed request: {exc.message}"[:500])
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return form(request, 500, "internal error; the request was not processed")


def setup(app: web.Application, ctx: AppContext) -> None:
    # Outermost, so errors of every other middleware (session, limits) become JSON too.
    app.middlewares.insert(0, error_middleware)
