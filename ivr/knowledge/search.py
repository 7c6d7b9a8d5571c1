"""Knowledge-base search on both databases, tolerant of Korean spacing and particles.

Each query word (bounded like every search: ``ivr.search.search_terms``) is compacted and loses
a trailing particle (``ivr.knowledge.text``), then must occur in the article's compact text.
SQLite looks words of 3+ characters up in the FTS5 trigram table ``kb_search`` (shorter ones
are checked with instr() on the article rows, walked most used first); PostgreSQL uses the
pg_trgm GIN index on ``kb_articles.search_text``. Only articles valid now and meant for the channel are returned,
most used first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.db.database import dialect_name
from ivr.knowledge.models import Article
from ivr.knowledge.text import compact, strip_particle
from ivr.search import search_terms, time_limited


def article_terms(query: str) -> list[str]:
    """The words an article must contain; ``SearchError`` past the shared limits."""
    terms: list[str] = []
    for word in search_terms(query.replace("\x00", "")):  # PostgreSQL text cannot hold NUL
        term = strip_particle(compact(word))
        if term and term not in terms:
            terms.append(term)
    return terms


def valid_at(now: datetime) -> ColumnElement[bool]:
    return and_(or_(Article.valid_from.is_(None), Article.valid_from <= now),
                or_(Article.valid_to.is_(None), Article.valid_to > now))


def for_channel(session: AsyncSession, channel: str) -> ColumnElement[bool]:
    """Articles with no channel list, or one naming ``channel``."""
    if dialect_name(session) == "sqlite":
        clause = ("(json_array_length(kb_articles.channels) = 0 OR EXISTS "
                  "(SELECT 1 FROM json_each(kb_articles.channels) WHERE json_each.value = :kb_channel))")
    else:
        clause = ("(json_array_length(kb_articles.channels) = 0 OR "
                  "kb_articles.channels::jsonb @> jsonb_build_array(CAST(:kb_channel AS text)))")
    return text(clause).bindparams(kb_channel=channel)  # type: ignore[return-value]


async def search_articles(session: AsyncSession, query: str, *, channel: str | None = None,
                          limit: int = 20, now: datetime | None = None,
                          include_invalid: bool = False) -> list[Article]:
    """Articles containing every word of ``query`` (all valid ones, most used first, if it has none)."""
    terms = article_terms(query)
    stmt = select(Article)
    if terms:
        if dialect_name(session) == "sqlite":
            # Words of 3+ characters through the trigram index; shorter ones are checked on the
            # article row itself while SQLite walks the articles most used first (the usage
            # index) and stops at ``limit`` (scanning the FTS table for them was slower).
            long = {f"kb{i}": f"%{t}%" for i, t in enumerate(terms) if len(t) >= 3}
            if long:
                where = " AND ".join(f"text LIKE :{name}" for name in long)
                matching: Select[tuple[Any]] = select(literal_column("rowid")).select_from(text("kb_search")).where(
                    text(where).bindparams(**long))
                stmt = stmt.where(Article.id.in_(matching))
            stmt = stmt.where(*(func.instr(Article.search_text, t) > 0 for t in terms if len(t) < 3))
        else:
            stmt = stmt.where(*(Article.search_text.contains(t, autoescape=True) for t in terms))
    if not include_invalid:
        stmt = stmt.where(valid_at(now or datetime.now(UTC)))
    if channel:
        stmt = stmt.where(for_channel(session, channel))
    stmt = stmt.order_by(Article.usage_count.desc(), Article.id.desc()).limit(limit)
    async with time_limited(session):
        return list((await session.execute(stmt)).scalars())
