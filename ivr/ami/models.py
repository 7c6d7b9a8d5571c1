"""Tables of the AMI bridge: agent state, the calls live in a queue right now, the outbox.

The first two are kept in the database (not only in memory) so the state survives a restart of the
bridge and ``current_metrics`` can be read from any process (web, CLI) with one call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.db.models import Base, utcnow


class AgentState(Base):
    """What an agent is doing, as Asterisk last told us and as the agent last asked for."""

    __tablename__ = "ami_agent_states"

    username: Mapped[str] = mapped_column(String(80), primary_key=True)
    extension: Mapped[str] = mapped_column(String(40))
    # What the agent asked for (survives restarts of either side; re-applied on resync).
    logged_in: Mapped[bool] = mapped_column(Boolean, default=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    # What Asterisk reports: queue -> penalty of the queues the agent is a member of.
    queues: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    device_status: Mapped[int] = mapped_column(Integer, default=0)
    in_call: Mapped[bool] = mapped_column(Boolean, default=False)
    # available | on_call | paused | logged_out | wrapup | ringing
    state: Mapped[str] = mapped_column(String(20), default="logged_out")
    since: Mapped[datetime] = mapped_column(default=utcnow)
    last_call_end: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LiveCall(Base):
    """A call waiting in a queue or talking to an agent (deleted when it leaves)."""

    __tablename__ = "ami_live_calls"

    linkedid: Mapped[str] = mapped_column(String(80), primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(Integer)
    queue: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(20))  # queued | connected
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    agent: Mapped[str | None] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxJob(Base):
    """A bus job a committed batch owes (``recordings.finished``), kept until the bus has it.

    Written in the batch's transaction, so a job is never lost between the commit and the
    bus; deleted once the bus took it (at worst sent twice after a crash, never lost).
    ``key`` is the external_id of the timeline row the job belongs to: one job per event.
    """

    __tablename__ = "ami_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    stream: Mapped[str] = mapped_column(String(80))
    job: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
