"""Text search over counselling notes and transcripts that works for Korean.

Korean words are short (버스 is two syllables) and unsegmented, so word tokenizers miss them.
SQLite uses an FTS5 trigram index (LIKE queries use it for terms of 3+ characters and scan
for shorter ones); PostgreSQL uses pg_trgm GIN indexes with ILIKE. Every term must match.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.db.database import dialect_name


@dataclass(frozen=True)
class SearchHit:
    contact_id: int
    kind: str  # segment | notes
    ref_id: int  # transcript segment id or contact id
    start: float | None  # seconds into the recording, for segments
    text: str


def _terms(query: str) -> list[str]:
    # LIKE wildcards in user input would widen the match; drop them.
    return [t for t in (w.replace("%", "").replace("_", "") for w in query.split()) if t]


async def search_text(session: AsyncSession, query: str, limit: int = 50) -> list[SearchHit]:
    terms = _terms(query)
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
    rows = (await session.execute(text(sql), params)).all()
    return [
        SearchHit(int(r[0]) if r[0] is not None else 0, r[1], int(r[2]),
                  float(r[3]) if r[3] is not None else None, r[4])
        for r in rows
    ]
