"""Open311 tables: service requests, their status history, and API keys.

A service request is its own record beside the contact it came from (a call can report two
problems; an API client has no contact at all). ``service_request_id`` is digits only, the
same 12-digit shape as ``contacts.tracking_number`` (YYMMDD + 6 random digits), so a
caller can key it in on a phone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.db.models import Base, utcnow


class Open311ApiKey(Base):
    """A client or department allowed to write: only the SHA-256 of the key is stored."""

    __tablename__ = "open311_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Comma-separated: "submit" (POST requests), "update" (department status updates).
    scopes: Mapped[str] = mapped_column(String(80), default="submit")
    # For "update" keys: the department, used as agency_responsible when none is given.
    agency: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    def allows(self, scope: str) -> bool:
        return self.active and scope in {s.strip() for s in self.scopes.split(",")}


class ServiceRequest(Base):
    __tablename__ = "open311_requests"
    __table_args__ = (
        Index("ix_open311_requests_requested", "requested_datetime"),
        Index("ix_open311_requests_code_requested", "service_code", "requested_datetime"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_request_id: Mapped[str] = mapped_column(String(20), unique=True)
    token: Mapped[str] = mapped_column(String(40), unique=True)
    service_code: Mapped[str] = mapped_column(String(80))
    service_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | closed
    status_notes: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    agency_responsible: Mapped[str | None] = mapped_column(String(200))
    service_notice: Mapped[str | None] = mapped_column(Text)
    requested_datetime: Mapped[datetime] = mapped_column(default=utcnow)
    updated_datetime: Mapped[datetime] = mapped_column(default=utcnow)
    expected_datetime: Mapped[datetime | None]
    address: Mapped[str | None] = mapped_column(String(500))
    address_id: Mapped[str | None] = mapped_column(String(120))
    zipcode: Mapped[str | None] = mapped_column(String(20))
    lat: Mapped[float | None] = mapped_column(Float)
    long: Mapped[float | None] = mapped_column(Float)
    # Either a URL a client gave, or our own /open311/v2/media/<media_key> for an MMS photo.
    media_url: Mapped[str | None] = mapped_column(String(1000))
    media_key: Mapped[str | None] = mapped_column(String(40), unique=True)
    media_path: Mapped[str | None] = mapped_column(String(500))
    media_content_type: Mapped[str | None] = mapped_column(String(100))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # call | sms | mms | api | console
    source: Mapped[str] = mapped_column(String(10))
    # "message:<id>" for SMS/MMS: a replayed inbound job finds its request instead of a new one.
    source_ref: Mapped[str | None] = mapped_column(String(120), unique=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    citizen_id: Mapped[int | None] = mapped_column(
        ForeignKey("citizens.id", ondelete="SET NULL"), index=True
    )
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("open311_api_keys.id", ondelete="SET NULL")
    )
    language: Mapped[str] = mapped_column(String(8), default="ko")
    # Personal data a client may send; never shown by GET requests (the spec keeps it private).
    phone: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(String(120))
    last_name: Mapped[str | None] = mapped_column(String(120))
    device_id: Mapped[str | None] = mapped_column(String(200))
    account_id: Mapped[str | None] = mapped_column(String(200))

    updates: Mapped[list[ServiceRequestUpdate]] = relationship(
        back_populates="request", order_by="ServiceRequestUpdate.id", cascade="all, delete-orphan"
    )


class ServiceRequestUpdate(Base):
    """One status change by a department, and whether the citizen was told by SMS."""

    __tablename__ = "open311_request_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("open311_requests.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(10))
    status_notes: Mapped[str | None] = mapped_column(Text)
    agency_responsible: Mapped[str | None] = mapped_column(String(200))
    expected_datetime: Mapped[datetime | None]
    by: Mapped[str] = mapped_column(String(120), default="")
    sms_to: Mapped[str | None] = mapped_column(String(40))

    request: Mapped[ServiceRequest] = relationship(back_populates="updates")
