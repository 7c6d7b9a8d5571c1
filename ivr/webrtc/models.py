"""Citizens' browser-call credential state, in the counselling database so every dasan node
(issue #20) sees the same: spent page tokens, endpoint leases, minted credentials (a hash, for
the on-screen survey) and recent mints per address (the rate limit). Times are epoch seconds.
Why here and not in Redis or astdb: docs/webrtc.md, "Several web processes"."""

from __future__ import annotations

from sqlalchemy import Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.db.models import Base


class SpentPageToken(Base):
    """A /call page token already used (its id is the key: a second insert is a replay)."""

    __tablename__ = "webcall_spent_tokens"

    token_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # forgotten after this


class EndpointLease(Base):
    """One citizen endpoint (``webvideo-NNN``) and until when its last credential may start a call."""

    __tablename__ = "webcall_leases"

    slot: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    leased_until: Mapped[float] = mapped_column(Float, default=0.0)
    leased_at: Mapped[float] = mapped_column(Float, default=0.0)  # least recently leased goes first

    __table_args__ = (Index("ix_webcall_leases_kind_leased_at", "kind", "leased_at"),)


class IssuedCredential(Base):
    """A minted credential, by the SHA-256 of its password (never the password): the page that
    holds it may answer its call's survey once, for a few hours."""

    __tablename__ = "webcall_issued"

    password_sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    username: Mapped[str] = mapped_column(String(40))
    issued_at: Mapped[float] = mapped_column(Float, index=True)


class RecentMint(Base):
    """One credential minted for an address within the last minute (the per-address limit)."""

    __tablename__ = "webcall_mints"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float, index=True)

    __table_args__ = (Index("ix_webcall_mints_address_at", "address", "at"),)
