"""Contact reports that scale to a month of 120 (~660,000 contacts).

``export_csv`` streams one CSV row per contact from a server-side cursor (``yield_per``): memory
stays flat however long the period. ``aggregate`` lets the database group by UTC hour, queue,
channel and language (sums and counts only), and then folds the UTC hours into the site's
local hours or days in Python (a few thousand groups), so averages stay exact.

Definitions match the wallboard (``ivr.ami.metrics``): offered = answered + abandoned;
service level = answered within the queue's service-level seconds / offered; abandonment =
abandoned / offered; average wait over answered calls; average talk over contacts with a talk
time; satisfaction over contacts with a score.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, case, func, literal, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.db.database import dialect_name
from ivr.db.models import Agent, Category, Contact

COLUMNS = ("id", "channel", "status", "started_at", "answered_at", "ended_at", "language", "queue", "agent",
           "topic", "category", "tracking_number", "wait_seconds", "talk_seconds", "outcome", "ivr_fallback",
           "hangup_side", "resolution", "satisfaction")
BATCH = 5000
GROUPS = ("queue", "channel", "language")


FORMULA = ("=", "+", "-", "@", "\t", "\r")
TIMES = tuple(COLUMNS.index(c) for c in ("started_at", "answered_at", "ended_at"))
TEXTS = tuple(COLUMNS.index(c) for c in ("language", "queue", "agent", "topic", "category", "tracking_number",
                                         "outcome", "hangup_side", "resolution"))


def csv_row(row: Any) -> list[object]:
    """One contact's cells: times in ISO 8601 with their offset, and no text a spreadsheet would run
    as a formula (CSV injection: a leading = + - @ gets a quote). None is written empty by csv."""
    cells = list(row)
    for i in TIMES:
        value = cells[i]
        if isinstance(value, str):  # SQLite's stored text, UTC: 'YYYY-MM-DD HH:MM:SS[.ffffff]'
            day, _, clock = value.partition(" ")
            cells[i] = f"{day}T{clock.removesuffix('.000000')}+00:00"
        elif value is not None:
            cells[i] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    for i in TEXTS:
        value = cells[i]
        if value and value[0] in FORMULA:
            cells[i] = "'" + value
    return cells


async def export_csv(session: AsyncSession, start: datetime, end: datetime) -> AsyncIterator[bytes]:
    """The CSV (UTF-8 with BOM, so spreadsheets read Korean) of contacts started in [start, end), in chunks."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)  # SQLite compares UTC wall times
    # SQLite hands times and enums over as stored text: read as text, written as text (parsing
    # each into a datetime or an enum only to write it back cost most of the export's time).
    # Enums are VARCHAR on both databases.
    raw = dialect_name(session) == "sqlite"
    text_of: Callable[[Any], Any] = lambda c: type_coerce(c, String)  # noqa: E731
    when: Callable[[Any], Any] = text_of if raw else (lambda c: c)
    stmt = (select(Contact.id, text_of(Contact.channel), text_of(Contact.status), when(Contact.started_at),
                   when(Contact.answered_at), when(Contact.ended_at), Contact.language, Contact.queue, Agent.username, Contact.topic, Category.code,
                   Contact.tracking_number, Contact.wait_seconds, Contact.talk_seconds, Contact.outcome,
                   Contact.ivr_fallback, Contact.hangup_side, Contact.resolution, Contact.satisfaction)
            .outerjoin(Agent, Agent.id == Contact.agent_id).outerjoin(Category, Category.id == Contact.category_id)
            .where(Contact.started_at >= start, Contact.started_at < end)
            .order_by(Contact.started_at, Contact.id).execution_options(yield_per=BATCH))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield ("\ufeff" + buffer.getvalue()).encode()
    connection = await session.connection()  # Core rows: no ORM loading per row
    result = await connection.stream(stmt)
    async for rows in result.partitions(BATCH):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(map(csv_row, rows))  # StrEnum cells write their value
        yield buffer.getvalue().encode()


@dataclass
class Bucket:
    contacts: int = 0
    answered: int = 0
    abandoned: int = 0
    within_sl: int = 0
    wait_sum: float = 0.0
    talk_sum: float = 0.0
    talk_count: int = 0
    satisfaction_sum: int = 0
    satisfaction_count: int = 0

    def add(self, other: Bucket) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, Any]:
        offered = self.answered + self.abandoned

        def ratio(a: float, b: float) -> float | None:
            return round(a / b, 4) if b else None

        return {"contacts": self.contacts, "answered": self.answered, "abandoned": self.abandoned,
                "answered_within_sl": self.within_sl, "service_level": ratio(self.within_sl, offered),
                "abandon_rate": ratio(self.abandoned, offered),
                "avg_wait_seconds": ratio(self.wait_sum, self.answered),
                "avg_talk_seconds": ratio(self.talk_sum, self.talk_count),
                "avg_satisfaction": ratio(self.satisfaction_sum, self.satisfaction_count),
                "satisfaction_count": self.satisfaction_count}


@dataclass
class Report:
    period: str  # hour | day
    timezone: str
    rows: dict[tuple[str, str, str, str], Bucket] = field(default_factory=dict)

    def as_json(self) -> list[dict[str, Any]]:
        return [{"period": key[0], "queue": key[1], "channel": key[2], "language": key[3], **b.as_json()}
                for key, b in sorted(self.rows.items())]


def _utc_hour(session: AsyncSession) -> ColumnElement[str]:
    if dialect_name(session) == "sqlite":
        # SQLite keeps UTC wall time as text 'YYYY-MM-DD HH:MM:SS...': its first 13 characters.
        return func.substr(Contact.started_at, 1, 13)
    return func.to_char(func.timezone("UTC", Contact.started_at), "YYYY-MM-DD HH24")


def _within(service_level: dict[str, int], default: int) -> ColumnElement[int]:
    threshold: ColumnElement[Any] = literal(default)
    if service_level:
        threshold = case(*((Contact.queue == q, s) for q, s in service_level.items()), else_=default)
    return case(((Contact.outcome == "answered") & (Contact.wait_seconds <= threshold), 1), else_=0)


async def aggregate(session: AsyncSession, start: datetime, end: datetime, *, period: str = "hour",
                    timezone: str = "Asia/Seoul", service_level: dict[str, int] | None = None,
                    default_service_level: int = 20) -> Report:
    """Per local hour or day (``period``), queue, channel and language, for contacts started in [start, end)."""
    if period not in ("hour", "day"):
        raise ValueError("period: hour or day")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    hour = _utc_hour(session).label("hour")
    answered = case((Contact.outcome == "answered", 1), else_=0)
    stmt = (select(hour, Contact.queue, Contact.channel, Contact.language, func.count(),
                   func.sum(answered), func.sum(case((Contact.outcome == "abandoned", 1), else_=0)),
                   func.sum(_within(service_level or {}, default_service_level)),
                   func.sum(case((Contact.outcome == "answered", func.coalesce(Contact.wait_seconds, 0)), else_=0)),
                   func.sum(Contact.talk_seconds), func.count(Contact.talk_seconds),
                   func.sum(Contact.satisfaction), func.count(Contact.satisfaction))
            .where(Contact.started_at >= start, Contact.started_at < end)
            .group_by(hour, Contact.queue, Contact.channel, Contact.language))
    zone = ZoneInfo(timezone)
    report = Report(period, timezone)
    for row in await session.execute(stmt):
        utc = datetime.strptime(row[0], "%Y-%m-%d %H").replace(tzinfo=UTC)
        local = utc.astimezone(zone)
        label = local.strftime("%Y-%m-%dT%H:00") if period == "hour" else local.strftime("%Y-%m-%d")
        channel = row[2].value if hasattr(row[2], "value") else str(row[2])
        key = (label, row[1] or "", channel, row[3] or "")
        bucket = Bucket(int(row[4]), int(row[5] or 0), int(row[6] or 0), int(row[7] or 0), float(row[8] or 0),
                        float(row[9] or 0), int(row[10] or 0), int(row[11] or 0), int(row[12] or 0))
        report.rows.setdefault(key, Bucket()).add(bucket)
    return report
