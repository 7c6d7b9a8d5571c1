"""Wallboard: live queue figures by WebSocket (the AMI bridge's ``live.metrics``) and today's charts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from ivr.console.live_socket import hold_until_closed, open_live_socket
from ivr.console.phone_status import phone_status
from ivr.console.render import ctx_of, render
from ivr.context import AppContext
from ivr.contracts import Topic
from ivr.db.models import Contact
from ivr.web.auth import current_user, requires

VIEWERS = ("agent", "supervisor", "reviewer")


async def metrics(ctx: AppContext) -> dict[str, Any]:
    """The AMI bridge's figures (``ivr.ami.metrics.current_metrics``), or an empty board without it."""
    try:
        from ivr.ami.metrics import current_metrics
    except ImportError:  # the bridge is an optional part of a deployment
        return {"queues": {}, "agents": {}, "today": {"total": 0, "by_channel": {}, "by_language": {}}}
    return await current_metrics(ctx)


async def today_by_hour(ctx: AppContext, now: datetime | None = None) -> list[int]:
    """Contacts started in each hour of today (site time zone), 24 numbers."""
    tz = ZoneInfo(ctx.settings.timezone)
    now = now or datetime.now(UTC)
    start = datetime.combine(now.astimezone(tz).date(), time(0), tz)
    counts = [0] * 24
    async with ctx.db.session() as session:
        rows = await session.execute(select(Contact.started_at).where(Contact.started_at >= start.astimezone(UTC)))
        for (started,) in rows:
            when = started if started.tzinfo else started.replace(tzinfo=UTC)
            counts[when.astimezone(tz).hour] += 1
    return counts


@requires(*VIEWERS)
async def wallboard_page(request: web.Request) -> web.Response:
    return render(request, "wallboard.html", timezone=ctx_of(request).settings.timezone)


@requires(*VIEWERS)
async def wallboard_data(request: web.Request) -> web.Response:
    """GET /api/console/wallboard: the metrics object plus ``by_hour`` (24 counts of today)."""
    ctx = ctx_of(request)
    return web.json_response({"metrics": await metrics(ctx), "by_hour": await today_by_hour(ctx)})


@requires(*VIEWERS)
async def wallboard_socket(request: web.Request) -> web.StreamResponse:
    """WebSocket /ws/console/wallboard: the current figures at once, then every ``live.metrics``."""
    ctx = ctx_of(request)
    ws = await open_live_socket(request)
    me = current_user(request)
    subs = [await ctx.bus.subscribe(topic) for topic in (Topic.LIVE_METRICS, Topic.LIVE_AMI, Topic.LIVE_SUPERVISE)]

    async def forward(sub: Any, wrap: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        async for message in sub:
            if ws.closed:
                break
            out = wrap(message)
            if out is not None:
                await ws.send_json(out)

    def mine(message: dict[str, Any]) -> dict[str, Any] | None:  # the result of my own listen-in request
        return {"type": "supervise", **message} if me and message.get("username") == me.username else None

    await ws.send_json({"type": "metrics", "metrics": await metrics(ctx), "by_hour": await today_by_hour(ctx)})
    await ws.send_json(phone_status(request).snapshot())
    tasks = [asyncio.create_task(forward(subs[0], lambda m: {"type": "metrics", "metrics": m})),
             asyncio.create_task(forward(subs[1], lambda m: {"type": "phone", "known": True, **m})),
             asyncio.create_task(forward(subs[2], mine))]
    await hold_until_closed(ws, tasks, subs)
    return ws


def setup(app: web.Application) -> None:
    app.router.add_get("/console/wallboard", wallboard_page)
    app.router.add_get("/api/console/wallboard", wallboard_data)
    app.router.add_get("/ws/console/wallboard", wallboard_socket)
