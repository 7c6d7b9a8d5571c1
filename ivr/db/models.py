"""The counselling database: one inquiry (contact) per citizen contact, whatever the channel.

Tables are added by later features in their own modules (importing ``Base``) and their own
Alembic migration branch; ``ivr.db.migrations`` upgrades to every head.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Column lengths that checks elsewhere must agree with (PostgreSQL enforces them, SQLite does
# not): a webhook refuses a provider's id that would not fit (see ivr.messaging.ids).
EXTERNAL_ID_LENGTH = 200  # contact_events.external_id, the idempotency key of a timeline event
PROVIDER_LENGTH = 40  # messages.provider
PROVIDER_MESSAGE_ID_LENGTH = 200  # messages.provider_message_id
MESSAGE_STATUS_LENGTH = 20  # messages.status


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Channel(enum.StrEnum):
    voice = "voice"
    sms = "sms"
    mms = "mms"
    chat = "chat"
    sns = "sns"
    video = "video"
    web_voice = "web_voice"  # a voice call from a browser (the /call page)


class ContactStatus(enum.StrEnum):
    open = "open"
    closed = "closed"


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as plain strings (no native enum types) so adding a value needs no DB migration.
    return Enum(cls, native_enum=False, length=20, validate_strings=True)


class Citizen(Base):
    """A caller or sender, identified by phone number or by a chat/SNS identity."""

    __tablename__ = "citizens"
    __table_args__ = (UniqueConstraint("identity_kind", "identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    identity_kind: Mapped[str] = mapped_column(String(20))  # phone | chat | sns:<network>
    identity: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    preferred_language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="citizen")


class User(Base):
    """A person who signs in to the web console."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(20), default="agent")  # agent|supervisor|admin|reviewer
    language: Mapped[str] = mapped_column(String(8), default="ko")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Raised on sign-out, password or role change and deactivation: every session cookie
    # carries the value it was issued with, and one with an older value is refused.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Agent(Base):
    """A counsellor's telephony identity: a PJSIP endpoint that queues ring."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    extension: Mapped[str] = mapped_column(String(40), unique=True)  # PJSIP endpoint, e.g. agent1001
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    skills: Mapped[list[AgentSkill]] = relationship(
        back_populates="agent", cascade="all, delete-orphan"
    )

    @property
    def interface(self) -> str:
        return f"PJSIP/{self.extension}"


class Skill(Base):
    """A skill group; each has its own Asterisk queue of the same name."""

    __tablename__ = "skills"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str | None] = mapped_column(String(8))


class AgentSkill(Base):
    __tablename__ = "agent_skills"
    __table_args__ = (UniqueConstraint("agent_id", "skill_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    skill_id: Mapped[int] = mapped_column(ForeignKey("skills.id", ondelete="CASCADE"))
    # 1 (learning) .. 5 (expert); rendered as queue member penalty 5 - proficiency.
    proficiency: Mapped[int] = mapped_column(Integer, default=3)

    agent: Mapped[Agent] = relationship(back_populates="skills")
    skill: Mapped[Skill] = relationship()

    @property
    def penalty(self) -> int:
        return max(0, 5 - self.proficiency)


class Category(Base):
    """The inquiry taxonomy admins edit (transport > bus route, ...)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="SET NULL"))
    name_ko: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Contact(Base):
    """One inquiry: a call, an SMS thread, a chat, ... with everything known about it."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_citizen_started", "citizen_id", "started_at"),
        Index("ix_contacts_started", "started_at"),
        Index("ix_contacts_queue_started", "queue", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("citizens.id", ondelete="SET NULL"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    status: Mapped[ContactStatus] = mapped_column(_enum(ContactStatus), default=ContactStatus.open)
    # Asterisk Linkedid of the call (voice) or the channel's own conversation id; unique per call.
    call_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    tracking_number: Mapped[str | None] = mapped_column(String(20), unique=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    language: Mapped[str] = mapped_column(String(8), default="ko")
    ivr_path: Mapped[str] = mapped_column(Text, default="")
    topic: Mapped[str | None] = mapped_column(String(80))
    queue: Mapped[str | None] = mapped_column(String(80))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    # answered | abandoned | self_service | night_* | ivr_hangup | unobserved. ``unobserved``:
    # the call ended while neither the IVR nor the AMI bridge could see how (a later Cdr
    # replaces it); ``ivr_fallback`` below says the caller met a dead or undecided IVR.
    outcome: Mapped[str | None] = mapped_column(String(20))
    # The dialplan's fallback queued the caller (IVR down or undecided): UserEvent DasanFallback
    # or the Cdr's UserField, stored by the AMI bridge; reports count callers who met a dead IVR.
    ivr_fallback: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hangup_side: Mapped[str | None] = mapped_column(String(20))  # caller | agent | system
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id", ondelete="SET NULL"))
    notes: Mapped[str] = mapped_column(Text, default="")
    resolution: Mapped[str | None] = mapped_column(String(40))
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    citizen: Mapped[Citizen | None] = relationship(back_populates="contacts")
    agent: Mapped[Agent | None] = relationship()
    category: Mapped[Category | None] = relationship()
    events: Mapped[list[ContactEvent]] = relationship(
        back_populates="contact", order_by="ContactEvent.id", cascade="all, delete-orphan"
    )


class ContactEvent(Base):
    """The timeline of a contact. ``external_id`` makes ingestion idempotent."""

    __tablename__ = "contact_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(20))  # ivr | ami | sms | chat | sns | web | system
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    contact: Mapped[Contact] = relationship(back_populates="events")


class Message(Base):
    """A text message of a contact: SMS/MMS, chat line or SNS message, either direction."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id"),
        Index("ix_messages_contact_at", "contact_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    provider: Mapped[str] = mapped_column(String(PROVIDER_LENGTH), default="")
    provider_message_id: Mapped[str | None] = mapped_column(String(PROVIDER_MESSAGE_ID_LENGTH))
    sender: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(MESSAGE_STATUS_LENGTH), default="received")
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    media: Mapped[list[Media]] = relationship(back_populates="message", cascade="all, delete-orphan")


class Media(Base):
    """A file attached to a message (an MMS photo), stored on disk beside the contact."""

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))

    message: Mapped[Message] = relationship(back_populates="media")


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    path: Mapped[str] = mapped_column(String(500), unique=True)  # relative to recordings dir
    format: Mapped[str] = mapped_column(String(20), default="wav")
    channels: Mapped[int | None] = mapped_column(Integer)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    integrity: Mapped[str] = mapped_column(String(20), default="unchecked")  # ok | corrupt | missing
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    purged_at: Mapped[datetime | None]
    # pending | running | done | failed | no_model (indexed: /metrics counts the backlog)
    transcription_status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    transcription_error: Mapped[str | None] = mapped_column(Text)
    transcription_attempts: Mapped[int] = mapped_column(Integer, default=0)

    contact: Mapped[Contact | None] = relationship()
    segments: Mapped[list[TranscriptSegment]] = relationship(
        back_populates="recording", order_by="TranscriptSegment.start", cascade="all, delete-orphan"
    )


class TranscriptSegment(Base):
    __tablename__ = "transcript_segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    speaker: Mapped[str] = mapped_column(String(20), default="mixed")  # caller | agent | mixed
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)

    recording: Mapped[Recording] = relationship(back_populates="segments")


class CallbackRequest(Base):
    """A caller who chose to be called back keeps a place in line (queue callback)."""

    __tablename__ = "callback_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    phone: Mapped[str] = mapped_column(String(40))
    queue: Mapped[str] = mapped_column(String(80))
    language: Mapped[str] = mapped_column(String(8), default="ko")
    status: Mapped[str] = mapped_column(String(20), default="waiting")  # waiting|dialing|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    last_result: Mapped[str | None] = mapped_column(String(200))
    # While dialling: the dasan node's dialer (host:pid) and the end of its lease, renewed as
    # it waits for the result; a lease that runs out is taken over by another node.
    dialing_by: Mapped[str | None] = mapped_column(String(120))
    dialing_until: Mapped[datetime | None]


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
