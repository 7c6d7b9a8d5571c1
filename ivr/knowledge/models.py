"""Knowledge-base tables: articles (texts per language, tags, channels, validity) and their revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ivr.db.models import Base, utcnow


class Article(Base):
    """One answer. ``texts`` is {language: {"title", "body"}}; Korean is always there.

    ``search_text`` is every title, body and tag casefolded with the spaces removed (see
    ``ivr.knowledge.text.compact``): what the trigram indexes search, so a query written with
    or without spaces finds the same article.
    """

    __tablename__ = "kb_articles"
    # Search results come most used first: with this index a search stops after its page.
    __table_args__ = (Index("ix_kb_articles_usage", "usage_count", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)  # named by IVR answer nodes and SMS keywords
    texts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every channel
    valid_from: Mapped[datetime | None]
    valid_to: Mapped[datetime | None]
    owner: Mapped[str] = mapped_column(String(80))
    search_text: Mapped[str] = mapped_column(Text, default="")
    usage_count: Mapped[int] = mapped_column(Integer, default=0)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    source_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArticleRevision(Base):
    """The article as it was saved at one revision (every save adds one; none is changed)."""

    __tablename__ = "kb_article_revisions"
    __table_args__ = (UniqueConstraint("article_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    author: Mapped[str] = mapped_column(String(80))
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)
