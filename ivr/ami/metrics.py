"""Live wallboard figures, read with one call from any process (state lives in the DB).

``current_metrics(ctx)`` returns (shape documented in docs/ami.md)::

    {"at": ISO time, "service_level_seconds": 20, "timezone": "Asia/Seoul", "day": "2026-11-25",
     "queues": {name: {"waiting", "longest_wait", "callbacks_waiting", "agents": {"available",
                "on_call", "paused", "wrapup", "ringing", "logged_in"}, "answered", "abandoned",
                "answered_within_sl", "service_level", "abandon_rate"}},
     "agents": {"available", "on_call", "paused", "wrapup", "ringing", "logged_in"},
     "today": {"total", "by_channel": {}, "by_language": {}, "by_queue": {}, "avg_satisfaction",
               "satisfaction_count"}}

Service level = calls answered within ``defaults.service_level_seconds`` of queues.yaml divided
by calls that reached an outcome in the queue (answered + abandoned), today (site time zone).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from ivr.ami.models import AgentState, LiveCall
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import CallbackRequest, Contact
from ivr.queues import QueueConfig, load_queues

AGENT_STATES = ("available", "on_call", "paused", "wrapup", "ringing")


class _HasDbSettings(Protocol):
    db: Database
    settings: Settings


# queues folder -> (stamp of its files, parsed config): the wallboard is refreshed twice a
# second, and parsing the YAML each time cost the bridge noticeable CPU during a burst.
_QUEUES: dict[Path, tuple[tuple[tuple[int, int] | None, ...], QueueConfig]] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _queue_config(settings: Settings) -> QueueConfig | None:
    folder = settings.queues_dir
    stamp = (_stamp(folder / "queues.yaml"), _stamp(folder / "agents.yaml"))
    cached = _QUEUES.get(folder)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        qconf = load_queues(folder)
    except Exception:
        return None
    _QUEUES[folder] = (stamp, qconf)
    return qconf


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def current_metrics(ctx: _HasDbSettings, now: datetime | None = None) -> dict[str, Any]:
    settings = ctx.settings
    qconf = _queue_config(settings)
    threshold = qconf.defaults.service_level_seconds if qconf else 20
    tz = ZoneInfo(settings.timezone)
    now = now or datetime.now(UTC)
    day = now.astimezone(tz).date()
    day_start = datetime.combine(day, time(0), tz).astimezone(UTC)
    names = list(qconf.queues) if qconf else []

    def empty_queue() -> dict[str, Any]:
        return {"waiting": 0, "longest_wait": 0, "callbacks_waiting": 0,
                "agents": {**{s: 0 for s in AGENT_STATES}, "logged_in": 0},
                "answered": 0, "abandoned": 0, "answered_within_sl": 0, "service_level": None, "abandon_rate": None}

    queues: dict[str, dict[str, Any]] = {name: empty_queue() for name in names}
    totals = {**{s: 0 for s in AGENT_STATES}, "logged_in": 0}
    today: dict[str, Any] = {"total": 0, "by_channel": {}, "by_language": {}, "by_queue": {},
                             "avg_satisfaction": None, "satisfaction_count": 0}
    async with ctx.db.session() as session:
        for call in (await session.execute(select(LiveCall).where(LiveCall.state == "queued"))).scalars():
            q = queues.setdefault(call.queue or "?", empty_queue())
            q["waiting"] += 1
            q["longest_wait"] = max(q["longest_wait"], int((now - _aware(call.joined_at)).total_seconds()))
        for state in (await session.execute(select(AgentState))).scalars():
            if not state.queues:
                continue
            totals["logged_in"] += 1
            if state.state in AGENT_STATES:
                totals[state.state] += 1
            for name in state.queues:
                q = queues.setdefault(name, empty_queue())
                q["agents"]["logged_in"] += 1
                if state.state in AGENT_STATES:
                    q["agents"][state.state] += 1
        rows = await session.execute(
            select(CallbackRequest.queue, func.count()).where(CallbackRequest.status.in_(["waiting", "dialing"]))
            .group_by(CallbackRequest.queue)
        )
        for name, count in rows:
            queues.setdefault(name, empty_queue())["callbacks_waiting"] = count
        since = Contact.started_at >= day_start
        within_sl = func.sum(case((Contact.wait_seconds <= threshold, 1), else_=0))
        outcome_rows = await session.execute(
            select(Contact.queue, Contact.outcome, func.count(), within_sl)
            .where(since, Contact.queue.is_not(None), Contact.outcome.in_(["answered", "abandoned"]))
            .group_by(Contact.queue, Contact.outcome)
        )
        for name, outcome, count, within in outcome_rows:
            q = queues.setdefault(name, empty_queue())
            q[outcome] += count
            if outcome == "answered":
                q["answered_within_sl"] += int(within or 0)
        for column, key in ((Contact.channel, "by_channel"), (Contact.language, "by_language"), (Contact.queue, "by_queue")):
            for value, count in await session.execute(select(column, func.count()).where(since).group_by(column)):
                if value is not None:
                    today[key][str(value)] = count
        today["total"] = sum(today["by_channel"].values())
        avg, count = (await session.execute(
            select(func.avg(Contact.satisfaction), func.count(Contact.satisfaction))
            .where(since, Contact.satisfaction.is_not(None))
        )).one()
        today["avg_satisfaction"] = round(float(avg), 2) if avg is not None else None
        today["satisfaction_count"] = count
    for q in queues.values():
        offered = q["answered"] + q["abandoned"]
        q["service_level"] = _ratio(q["answered_within_sl"], offered)
        q["abandon_rate"] = _ratio(q["abandoned"], offered)
    return {"at": now.isoformat(), "service_level_seconds": threshold, "timezone": settings.timezone,
            "day": day.isoformat(), "queues": queues, "agents": totals, "today": today}
