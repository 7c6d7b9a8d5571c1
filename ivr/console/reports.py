"""Report downloads for supervisors: every contact of a period as CSV (streamed), and service
level, abandonment, wait, talk and satisfaction per hour or day, queue, channel and language."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from ivr import sitetime
from ivr.console.http import audit_request
from ivr.console.render import ctx_of, render
from ivr.queues import load_queues
from ivr.reports.contacts import aggregate, export_csv
from ivr.web.auth import requires
from ivr.web.errors import json_error

MAX_DAYS = 62  # two months per request


def parse_period(first_text: str, last_text: str, timezone: str) -> tuple[datetime, datetime, str]:
    """Two of the site's days (YYYY-MM-DD, both included) as a UTC-aware [start, end) and a file-name label."""
    try:
        first, last = date.fromisoformat(first_text), date.fromisoformat(last_text)
    except ValueError:
        raise json_error(400, "from, to: dates such as 2026-11-01 / 날짜 형식이 맞지 않습니다") from None
    if last < first:
        raise json_error(400, "to: on or after from")
    if (last - first).days >= MAX_DAYS:
        raise json_error(400, f"from..to: at most {MAX_DAYS} days per report")
    zone = ZoneInfo(timezone)
    start = datetime.combine(first, time(), zone)
    end = datetime.combine(last + timedelta(days=1), time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC), f"{first}_{last}"


def period_of(request: web.Request) -> tuple[datetime, datetime, str]:
    """?from=YYYY-MM-DD&to=YYYY-MM-DD in the site's time zone (see ``parse_period``)."""
    return parse_period(request.query.get("from", ""), request.query.get("to", ""),
                        ctx_of(request).settings.timezone)


@requires("supervisor")
async def contacts_csv(request: web.Request) -> web.StreamResponse:
    """GET /api/console/reports/contacts.csv?from&to: one row per contact, streamed."""
    start, end, name = period_of(request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="contacts_{name}.csv"'})
    await audit_request(request, "report_exported", "contacts", start=start.isoformat(), end=end.isoformat())
    await response.prepare(request)
    async with ctx_of(request).db.session() as session:
        async for chunk in export_csv(session, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


@requires("supervisor")
async def summary(request: web.Request) -> web.Response:
    """GET /api/console/reports/summary?from&to&period=hour|day."""
    start, end, _ = period_of(request)
    period = request.query.get("period", "day")
    if period not in ("hour", "day"):
        raise json_error(400, "period: hour or day")
    ctx = ctx_of(request)
    threshold = load_queues(ctx.settings.queues_dir).defaults.service_level_seconds
    async with ctx.db.session() as session:
        report = await aggregate(session, start, end, period=period, timezone=ctx.settings.timezone,
                                 default_service_level=threshold)
    return web.json_response({"period": period, "timezone": ctx.settings.timezone,
                              "service_level_seconds": threshold, "rows": report.as_json()})


@requires("supervisor")
async def reports_page(request: web.Request) -> web.Response:
    # This month so far on the site's calendar (a UTC browser is a day behind KST after midnight).
    today = sitetime.local().date()
    return render(request, "reports.html", default_from=today.replace(day=1).isoformat(), default_to=today.isoformat())


def setup(app: web.Application) -> None:
    app.router.add_get("/console/reports", reports_page)
    app.router.add_get("/api/console/reports/contacts.csv", contacts_csv)
    app.router.add_get("/api/console/reports/summary", summary)
