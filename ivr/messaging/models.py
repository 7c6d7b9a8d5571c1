"""Tables of the messaging sidecar: web chat conversations and SNS reply deadlines."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.db.models import Base, utcnow


class ChatConversation(Base):
    """One web chat: a secret token the citizen's browser keeps, so a reconnect resumes it."""

    __tablename__ = "chat_conversations"
    __table_args__ = (Index("ix_chat_conversations_status_queued", "status", "queued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="waiting")  # waiting | active | closed
    agent_username: Mapped[str | None] = mapped_column(String(80), index=True)
    language: Mapped[str] = mapped_column(String(8), default="ko")
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # When the citizen was last connected or wrote: a chat idle longer than
    # ``sms.chat_idle_seconds`` is closed (an abandoned chat must not wait for ever).
    last_seen_at: Mapped[datetime | None] = mapped_column(index=True)
    # A phone number the citizen claimed in the chat; it is attached to the conversation only
    # after they type the one-time code sent to it by SMS (``phone_code``: its salted SHA-256).
    claimed_phone: Mapped[str | None] = mapped_column(String(40))
    phone_code: Mapped[str | None] = mapped_column(String(64))
    phone_code_expires: Mapped[datetime | None]
    phone_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    phone_verified_at: Mapped[datetime | None]


class ChatCodeSend(Base):
    """One verification code texted from a chat: ``sms.chat_codes_per_phone_hour`` is counted on
    these per number, so neither new chats nor one chat asking again can text a number more
    (SMS pumping). Rows older than the hour are deleted as codes are sent."""

    __tablename__ = "chat_code_sends"
    __table_args__ = (Index("ix_chat_code_sends_phone_sent", "phone", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(40))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("chat_conversations.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime] = mapped_column(index=True)


class SnsDeadline(Base):
    """An inbound SNS message must be answered within ``sms.sns_reply_hours`` (24 h)."""

    __tablename__ = "sns_deadlines"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    network: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime]
    due_at: Mapped[datetime] = mapped_column(index=True)
    replied_at: Mapped[datetime | None]
    reply_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
