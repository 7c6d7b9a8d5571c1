"""Tables of the web console: quality reviews of recorded calls and configuration history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ivr.db.models import Base, utcnow


class QualityReview(Base):
    """A reviewer's score of one recorded contact (each criterion 1-5)."""

    __tablename__ = "console_quality_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id", ondelete="SET NULL"), index=True)
    reviewer: Mapped[str] = mapped_column(String(80))
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)  # criterion -> 1..5
    total: Mapped[int] = mapped_column(Integer)  # 0..100
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConfigChange(Base):
    """One applied change of a configuration file (queues, agents, menus, prompts), with its diff."""

    __tablename__ = "console_config_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    author: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(40))  # queues | agents | menu | prompt
    target: Mapped[str] = mapped_column(String(300))  # file written
    comment: Mapped[str] = mapped_column(Text, default="")
    diff: Mapped[str] = mapped_column(Text, default="")
    # applied | written (saved, Asterisk apply queued) | failed
    status: Mapped[str] = mapped_column(String(20), default="written")
    apply_result: Mapped[str] = mapped_column(Text, default="")
