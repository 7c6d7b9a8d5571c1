"""The figures /metrics reads at each scrape (ivr.web.metrics), none of them by reading a
whole history table: a year of contacts is millions of rows, and a scrape comes every few
seconds.

- Queues and agents: the AMI bridge's live state (a row per live call and per agent).
- Contacts and messages: counters of the rows added since this process began counting
  (``RowCounter``: only ids past the last one seen are read; ``rate()`` gives calls and
  messages per second).
- The transcription backlog: recordings per unfinished status, through the status index
  (migration 0007_recordings_status_index); ``done`` is never counted.
- The AMI connection and the bus lag: what the web process last heard on ``live.ami``.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from ivr.context import AppContext
from ivr.db.models import Contact, Message, Recording

# Ids below the highest counted one that may still appear: PostgreSQL hands ids out before the
# commit, so a slower transaction's rows become visible after a later one's. A gap this far
# below the top is given up (a rolled-back insert leaves one for good).
LOOKBACK = 5000
BACKLOG_STATUSES = ("pending", "running", "failed", "no_model")  # every status but done


class RowCounter:
    """Rows of one table added since the first ``read``, by the value of one column.

    The first read notes the highest id; each later one reads the rows past it and the ids
    still missing below it (gaps left by transactions not yet committed), counts each id once,
    and moves on."""

    def __init__(self, id_column: InstrumentedAttribute[int], label: InstrumentedAttribute[Any]) -> None:
        self.id_column, self.label = id_column, label
        self.top: int | None = None  # the highest id seen
        self.missing: set[int] = set()  # ids below top not seen yet, at most LOOKBACK below it
        self.totals: dict[str, int] = {}

    async def read(self, session: AsyncSession) -> dict[str, int]:
        if self.top is None:
            self.top = (await session.execute(select(func.max(self.id_column)))).scalar() or 0
            return {}
        after = min(self.missing, default=self.top + 1) - 1
        rows = (await session.execute(select(self.id_column, self.label).where(self.id_column > after))).all()
        seen = set()
        for row_id, value in rows:
            if row_id <= self.top and row_id not in self.missing:
                continue  # counted at an earlier scrape
            seen.add(row_id)
            key = str(getattr(value, "value", value))
            self.totals[key] = self.totals.get(key, 0) + 1
        top = max((row_id for row_id, _ in rows), default=self.top)
        self.missing |= set(range(max(self.top + 1, top - LOOKBACK + 1), top + 1))
        self.missing -= seen
        self.top = top
        self.missing = {i for i in self.missing if i > top - LOOKBACK}
        return dict(self.totals)


class SiteFigures:
    """The counters' state lives as long as the listener serving them."""

    def __init__(self) -> None:
        self.contacts = RowCounter(Contact.id, Contact.channel)
        self.messages = RowCounter(Message.id, Message.direction)

    async def families(self, ctx: AppContext, phone: Any | None) -> list[Metric]:
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
        contacts = CounterMetricFamily("dasan_contacts", "Contacts started since this process began counting "
                                       "(calls: channel voice)", labels=["channel"])
        messages = CounterMetricFamily("dasan_messages", "SMS/chat/SNS messages since this process began counting",
                                       labels=["direction"])
        backlog = GaugeMetricFamily("dasan_recordings", "Recordings not transcribed, by status (pending: the backlog)",
                                    labels=["transcription_status"])
        async with ctx.db.session() as session:
            for channel, count in sorted((await self.contacts.read(session)).items()):
                contacts.add_metric([channel], count)
            for direction, count in sorted((await self.messages.read(session)).items()):
                messages.add_metric([direction], count)
            found = {status: count for status, count in (await session.execute(
                select(Recording.transcription_status, func.count())
                .where(Recording.transcription_status.in_(BACKLOG_STATUSES))
                .group_by(Recording.transcription_status))).all()}
        for status in BACKLOG_STATUSES:
            backlog.add_metric([status], found.get(status, 0))
        ami = GaugeMetricFamily("dasan_ami_connected", "1: the AMI bridge reports its Asterisk session up; "
                                "0: down or bridge silent; NaN: never heard")
        lag = GaugeMetricFamily("dasan_bus_lag_seconds",
                                "Delay of the last live.ami message from the bridge to this process")
        if phone is not None:
            snap = phone.snapshot()
            ami.add_metric([], 1.0 if snap["connected"] else 0.0 if snap["known"] else math.nan)
            lag.add_metric([], phone.bus_lag if phone.bus_lag is not None else math.nan)
        return [waiting, longest, agents, contacts, messages, backlog, ami, lag]
