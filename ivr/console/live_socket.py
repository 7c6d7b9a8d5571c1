"""The console's live WebSockets (agent, wallboard): opened after the origin check, held until the
browser goes, then every forwarding task and bus subscription of the socket is ended."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp import WSMsgType, web

from ivr.console.render import ctx_of
from ivr.tasks import cancel_and_wait
from ivr.web.origin import check_websocket_origin


async def open_live_socket(request: web.Request) -> web.WebSocketResponse:
    """The socket of this request, after refusing another site's origin."""
    check_websocket_origin(request, ctx_of(request).settings)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    return ws


async def hold_until_closed(ws: web.WebSocketResponse, tasks: Sequence[asyncio.Task[Any]],
                            subs: Sequence[Any]) -> None:
    """Reads the socket until it closes or fails, then cancels ``tasks`` and closes ``subs``."""
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        await cancel_and_wait(tasks)
        for sub in subs:
            await sub.close()
