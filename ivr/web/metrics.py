"""GET /metrics: Prometheus text format (prometheus-client), off unless ``metrics.enabled``.

What this process measured itself (ivr.observe: AGI command latency, AMI commit batch sizes,
FastAGI sessions; under ``dasan up`` every service is this process) plus figures read at each
scrape: waiting calls and longest wait per queue and agents by state (the AMI bridge's live
state), contacts and messages so far (counters: ``rate()`` gives calls and messages per
second), recordings by transcription status (the backlog), the AMI connection as the bridge
last reported it on ``live.ami`` and that message's delay on the bus.

Access: only clients whose address is in ``metrics.allow`` (loopback by default), and with
``metrics.token`` set only requests with ``Authorization: Bearer <token>``. Anything else gets
404, as if the route did not exist.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ivr.context import AppContext
from ivr.db.models import Contact, Message, Recording
from ivr.web.context import context_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Figures(Collector):
    """Metric families computed before the scrape (a collector's ``collect`` cannot await)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def allowed(request: web.Request, ctx: AppContext) -> bool:
    conf = ctx.settings.metrics
    if not conf.enabled:
        return False
    try:
        address = ipaddress.ip_address((request.remote or "").split("%", 1)[0])
    except ValueError:
        return False
    if not any(address in ipaddress.ip_network(net, strict=False) for net in conf.allow):
        return False
    if conf.token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), conf.token.encode())
    return True


async def figures(ctx: AppContext, phone: Any | None) -> list[Metric]:
    from ivr.ami.metrics import current_metrics

    live = await current_metrics(ctx)
    waiting = GaugeMetricFamily("dasan_queue_waiting_calls", "Calls waiting in the queue now", labels=["queue"])
    longest = GaugeMetricFamily("dasan_queue_longest_wait_seconds", "Longest wait of a caller in the queue now",
                                labels=["queue"])
    for name, q in sorted(live["queues"].items()):
        waiting.add_metric([name], q["waiting"])
        longest.add_metric([name], q["longest_wait"])
    agents = GaugeMetricFamily("dasan_agents", "Logged-in agents by state", labels=["state"])
    for state, count in sorted(live["agents"].items()):
        if state != "logged_in":
            agents.add_metric([state], count)
    contacts = CounterMetricFamily("dasan_contacts", "Contacts recorded so far (calls: channel voice)",
                                   labels=["channel"])
    messages = CounterMetricFamily("dasan_messages", "SMS/chat/SNS messages recorded so far", labels=["direction"])
    recordings = GaugeMetricFamily("dasan_recordings", "Recordings by transcription status (pending: the backlog)",
                                   labels=["transcription_status"])
    async with ctx.db.session() as session:
        for channel, count in await session.execute(select(Contact.channel, func.count()).group_by(Contact.channel)):
            contacts.add_metric([str(getattr(channel, "value", channel))], count)
        for direction, count in await session.execute(select(Message.direction, func.count())
                                                      .group_by(Message.direction)):
            messages.add_metric([str(direction)], count)
        for status, count in await session.execute(select(Recording.transcription_status, func.count())
                                                   .group_by(Recording.transcription_status)):
            recordings.add_metric([str(status)], count)
    ami = GaugeMetricFamily("dasan_ami_connected",
                            "1: the AMI bridge reports its Asterisk session up; 0: down or bridge silent; NaN: never heard")
    lag = GaugeMetricFamily("dasan_bus_lag_seconds", "Delay of the last live.ami message from the bridge to this process")
    if phone is not None:
        snap = phone.snapshot()
        ami.add_metric([], 1.0 if snap["connected"] else 0.0 if snap["known"] else math.nan)
        lag.add_metric([], phone.bus_lag if phone.bus_lag is not None else math.nan)
    return [waiting, longest, agents, contacts, messages, recordings, ami, lag]


async def metrics(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if not allowed(request, ctx):
        raise web.HTTPNotFound()
    from ivr.console.phone_status import PHONE_STATUS

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(await figures(ctx, request.app.get(PHONE_STATUS))))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def setup(app: web.Application, ctx: AppContext) -> None:
    app.router.add_get("/metrics", metrics)
