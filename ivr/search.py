"""Text search over counselling notes and transcripts that works for Korean.

Korean words are short (버스 is two syllables) and unsegmented, so word tokenizers miss them.
SQLite uses an FTS5 trigram index (LIKE queries use it for terms of 3+ characters and scan
for shorter ones); PostgreSQL uses pg_trgm GIN indexes with ILIKE. Every term must match.

A query is bounded before it reaches the database: terms are de-duplicated (case-insensitively),
at most ``MAX_TERMS`` of at most ``MAX_TERM_CHARS`` characters (more is a ``SearchError`` the
endpoints answer 400), and the statement gets ``TIME_LIMIT_SECONDS``: PostgreSQL's
``statement_timeout`` for that transaction, SQLite's progress handler, which interrupts it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.db.database import dialect_name

MAX_TERMS = 8
MAX_TERM_CHARS = 64
TIME_LIMIT_SECONDS = 5.0


class SearchError(ValueError):
    """A query the search refuses (too many or too long words) or that ran out of time."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SearchHit:
    contact_id: int
    kind: str  # segment | notes
    ref_id: int  # transcript segment id or contact id
    start: float | None  # seconds into the recording, for segments
    text: str


def search_terms(query: str) -> list[str]:
    """The distinct words of ``query`` (LIKE wildcards dropped); ``SearchError`` if too many."""
    seen: dict[str, str] = {}
    for word in query.split():
        term = word.replace("%", "").replace("_", "")  # LIKE wildcards would widen the match
        if term:
            seen.setdefault(term.casefold(), term)
    terms = list(seen.values())
    if len(terms) > MAX_TERMS:
        raise SearchError(f"q: at most {MAX_TERMS} different words (got {len(terms)}) / "
                          f"검색어는 {MAX_TERMS}개까지입니다")
    long = [t for t in terms if len(t) > MAX_TERM_CHARS]
    if long:
        raise SearchError(f"q: words of at most {MAX_TERM_CHARS} characters / 검색어가 너무 깁니다")
    return terms


@asynccontextmanager
async def time_limited(session: AsyncSession, seconds: float = TIME_LIMIT_SECONDS) -> AsyncIterator[None]:
    """Statements run inside end with ``SearchError`` (422: the query asks too much) once ``seconds`` have passed."""
    try:
        if dialect_name(session) == "postgresql":
            # set_config(..., true) is SET LOCAL: it ends with the transaction, and is put back
            # here so later statements of the same transaction are not limited.
            old = (await session.execute(text("SELECT current_setting('statement_timeout'), "
                                              "set_config('statement_timeout', :ms, true)"),
                                         {"ms": str(int(seconds * 1000))})).scalar_one()
            yield
            await session.execute(text("SELECT set_config('statement_timeout', :old, true)"), {"old": old})
        else:
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            assert raw is not None
            deadline = time.monotonic() + seconds
            handler: Callable[[], int] = lambda: int(time.monotonic() > deadline)  # noqa: E731
            await raw.set_progress_handler(handler, 10_000)  # called every 10k VM steps
            try:
                yield
            finally:
                await raw.set_progress_handler(None, 0)
    except DBAPIError as exc:
        text_ = str(exc.orig).lower()
        if "statement timeout" in text_ or "interrupted" in text_ or "canceling statement" in text_:
            raise SearchError("the search took too long; use fewer or more specific words / "
                              "검색 시간이 초과되었습니다", 422) from None
        raise


async def search_text(session: AsyncSession, query: str, limit: int = 50) -> list[SearchHit]:
    """Hits for every word of ``query``; raises ``SearchError`` (see ``search_terms``)."""
    terms = search_terms(query)
    if not terms:
        return []
    params: dict[str, object] = {f"t{i}": f"%{t}%" for i, t in enumerate(terms)}
    params["limit"] = limit
    if dialect_name(session) == "sqlite":
        # Terms of 3+ characters use the trigram index through LIKE. Shorter ones (most Korean
        # words) scan with instr(): SQLite before 3.42 returns no rows for a trigram LIKE whose
        # pattern has fewer than 3 characters instead of falling back to a scan.
        for i, term in enumerate(terms):
            if len(term) < 3:
                params[f"t{i}"] = term.lower()
        where = " AND ".join(
            f"text LIKE :t{i}" if len(t) >= 3 else f"instr(lower(text), :t{i}) > 0"
            for i, t in enumerate(terms)
        )
        sql = (
            "SELECT contact_id, kind, ref_id, start, text FROM search_index "
            f"WHERE {where} ORDER BY contact_id DESC, start LIMIT :limit"
        )
    else:
        seg = " AND ".join(f"s.text ILIKE :t{i}" for i in range(len(terms)))
        note = " AND ".join(f"c.notes ILIKE :t{i}" for i in range(len(terms)))
        sql = (
            "SELECT * FROM ("
            "SELECT s.contact_id, 'segment' AS kind, s.id AS ref_id, s.start, s.text "
            f"FROM transcript_segments s WHERE {seg} "
            "UNION ALL SELECT c.id, 'notes', c.id, NULL, c.notes "
            f"FROM contacts c WHERE {note}) hits "
            "ORDER BY contact_id DESC, start LIMIT :limit"
        )
    async with time_limited(session):
        rows = (await session.execute(text(sql), params)).all()
    return [
        SearchHit(int(r[0]) if r[0] is not None else 0, r[1], int(r[2]),
                  float(r[3]) if r[3] is not None else None, r[4])
        for r in rows
    ]
