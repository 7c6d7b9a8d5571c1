"""QA tables: the contacts drawn for review and the reviewers' evaluations of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ivr.db.models import Base, utcnow


class QaSample(Base):
    """One contact drawn at random for review (a contact is drawn once per scorecard)."""

    __tablename__ = "qa_samples"
    __table_args__ = (UniqueConstraint("contact_id", "scorecard"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    scorecard: Mapped[str] = mapped_column(String(40))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    drawn_at: Mapped[datetime] = mapped_column(default=utcnow)
    drawn_by: Mapped[str] = mapped_column(String(80))


class QaEvaluation(Base):
    """A reviewer's scores of one sampled contact; two reviewers of one sample are a calibration."""

    __tablename__ = "qa_evaluations"
    __table_args__ = (UniqueConstraint("sample_id", "reviewer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("qa_samples.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(80))
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)  # criterion -> 0..max
    total: Mapped[float] = mapped_column(Float)  # 0-100, weighted
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]  # the agent has read it
    agent_comment: Mapped[str] = mapped_column(Text, default="")
