"""The SNS 24-hour reply deadline report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from ivr.context import AppContext
from ivr.messaging.models import SnsDeadline


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def state_of(row: SnsDeadline, now: datetime) -> str:
    """answered_in_time | answered_late | overdue (no reply, past due) | pending (no reply yet)."""
    due = _utc(row.due_at)
    if row.replied_at is not None:
        return "answered_in_time" if _utc(row.replied_at) <= due else "answered_late"
    return "overdue" if now > due else "pending"


async def deadline_report(ctx: AppContext, since: datetime, until: datetime,
                          now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    async with ctx.db.session() as session:
        rows = (await session.execute(select(SnsDeadline).where(
            SnsDeadline.received_at >= since, SnsDeadline.received_at < until)
            .order_by(SnsDeadline.due_at, SnsDeadline.id).limit(10_000))).scalars().all()
    counts = dict.fromkeys(("answered_in_time", "answered_late", "overdue", "pending"), 0)
    items = []
    for row in rows:
        state = state_of(row, now)
        counts[state] += 1
        items.append({"message_id": row.message_id, "contact_id": row.contact_id, "network": row.network,
                      "received_at": _utc(row.received_at).isoformat(), "due_at": _utc(row.due_at).isoformat(),
                      "replied_at": _utc(row.replied_at).isoformat() if row.replied_at else None,
                      "state": state})
    return {"since": since.isoformat(), "until": until.isoformat(), "hours": ctx.settings.sms.sns_reply_hours,
            "total": len(items), **counts, "items": items}
