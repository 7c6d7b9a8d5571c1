"""GET /metrics: Prometheus text format (prometheus-client), off unless ``metrics.enabled``.

What this process measured itself (ivr.observe: AGI command latency, AMI commit batch sizes,
group-commit batch sizes, FastAGI sessions) plus, where the web service runs, the site's
figures read at each scrape (ivr.web.metrics_figures): waiting calls and longest wait per
queue, agents by state, contacts and messages (counters: ``rate()`` gives calls and messages
per second), the transcription backlog, the AMI connection as the bridge last reported it on
``live.ami`` and that message's delay on the bus.

Where: on the web port, or with ``metrics.port`` set on an address of its own that
``dasan up`` opens in every process (``MetricsListener``), so a service run alone (``dasan up
--only agi``) serves its own instruments. Access: only clients whose address is in
``metrics.allow`` (loopback by default), and with ``metrics.token`` set only requests with
``Authorization: Bearer <token>``. Anything else gets 404, as if the route did not exist.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ivr.context import AppContext
from ivr.web.context import CTX_KEY, context_of
from ivr.web.metrics_figures import SiteFigures

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OWN_ADDRESS = web.AppKey("metrics_own_address", bool)  # the app is MetricsListener's
SITE_FIGURES = web.AppKey("metrics_site_figures", SiteFigures)  # absent: this process's instruments only


class _Figures(Collector):
    """Metric families computed before the scrape (a collector's ``collect`` cannot await)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def allowed(request: web.Request, ctx: AppContext) -> bool:
    conf = ctx.settings.metrics
    if not conf.enabled or (conf.port is not None) != request.app.get(OWN_ADDRESS, False):
        return False  # off, or served on the other address
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


async def metrics(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if not allowed(request, ctx):
        raise web.HTTPNotFound()
    from ivr.console.phone_status import PHONE_STATUS

    body = generate_latest(REGISTRY)
    site = request.app.get(SITE_FIGURES)
    if site is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Figures(await site.families(ctx, request.app.get(PHONE_STATUS))))
        body += generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def setup(app: web.Application, ctx: AppContext) -> None:
    """The web app's /metrics (the site's figures with this process's instruments)."""
    app[SITE_FIGURES] = SiteFigures()
    app.router.add_get("/metrics", metrics)


class MetricsListener:
    """/metrics on ``metrics.host:metrics.port``, started by ``dasan up`` beside the services.
    With ``site_figures`` (the process runs the web service) it serves the site's figures too,
    hearing ``live.ami`` itself; otherwise only what this process measures."""

    name = "metrics"

    def __init__(self, ctx: AppContext, site_figures: bool) -> None:
        self.ctx, self.site_figures = ctx, site_figures
        self.runner: web.AppRunner | None = None

    async def start(self) -> list[str]:
        from ivr.console import phone_status

        app = web.Application()
        app[CTX_KEY], app[OWN_ADDRESS] = self.ctx, True
        if self.site_figures:
            app[SITE_FIGURES] = SiteFigures()
            phone_status.setup(app, self.ctx)
        app.router.add_get("/metrics", metrics)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        conf = self.ctx.settings.metrics
        await web.TCPSite(self.runner, conf.host, conf.port).start()
        hosts = [(str(a[0]), a[1]) for a in self.runner.addresses]
        return [f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics" for host, port in hosts]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
