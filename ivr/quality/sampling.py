"""Drawing contacts for review and comparing reviewers.

``draw`` picks, for every agent who handled contacts in the period, up to ``per_agent`` of
them at random (the database's random(), one query with a window per agent), never a contact
already drawn for that scorecard. ``calibration`` sets reviewers' scores of one contact side
by side with the spread (highest minus lowest) per criterion and for the total.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.db.models import Contact
from ivr.quality.models import QaEvaluation, QaSample
from ivr.quality.scorecards import Scorecard


async def draw(session: AsyncSession, start: datetime, end: datetime, per_agent: int, scorecard_id: str,
               scorecard: Scorecard, drawn_by: str) -> list[QaSample]:
    """New samples for contacts started in [start, end); the caller commits."""
    drawn = select(QaSample.contact_id).where(QaSample.scorecard == scorecard_id)
    ranked = (select(Contact.id.label("contact_id"), Contact.agent_id.label("agent_id"),
                     func.row_number().over(partition_by=Contact.agent_id, order_by=func.random()).label("rank"))
              .where(Contact.started_at >= start, Contact.started_at < end, Contact.agent_id.is_not(None),
                     Contact.id.not_in(drawn)))
    if scorecard.channels:
        ranked = ranked.where(Contact.channel.in_(scorecard.channels))
    sub = ranked.subquery()
    rows = (await session.execute(select(sub.c.contact_id, sub.c.agent_id).where(sub.c.rank <= per_agent)
                                  .order_by(sub.c.agent_id, sub.c.contact_id))).all()
    samples = [QaSample(contact_id=c, agent_id=a, scorecard=scorecard_id, period_start=start, period_end=end,
                        drawn_by=drawn_by) for c, a in rows]
    session.add_all(samples)
    await session.flush()
    return samples


def calibration(scorecard: Scorecard, evaluations: list[QaEvaluation]) -> dict[str, Any]:
    """Each criterion's scores by reviewer and their spread; the same for the total."""
    criteria = []
    for c in scorecard.criteria:
        by = {e.reviewer: e.scores.get(c.key) for e in evaluations}
        values = [v for v in by.values() if isinstance(v, int)]
        criteria.append({"key": c.key, "max": c.max, "scores": by,
                         "spread": (max(values) - min(values)) if len(values) > 1 else None})
    totals = {e.reviewer: e.total for e in evaluations}
    return {"reviewers": [e.reviewer for e in evaluations], "criteria": criteria,
            "total": {"scores": totals, "spread": round(max(totals.values()) - min(totals.values()), 1)
                      if len(totals) > 1 else None}}
