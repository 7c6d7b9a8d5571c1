"""The AppContext every request handler works with: put on the application once by ``create_app``."""

from __future__ import annotations

from aiohttp import web

from ivr.context import AppContext

CTX_KEY = web.AppKey("ctx", AppContext)


def context_of(request: web.Request) -> AppContext:
    return request.app[CTX_KEY]
