"""Articles suggested from what is being said: the agent page sends the running live transcript
(ivr.speech.audiosocket partials, both speakers) and gets the published articles that best
match its last words.

Unlike the agent's own search (every word must occur), speech is matched loosely: each spoken
word of two or more syllables (compacted, one trailing particle removed, as the search does;
common conversational words dropped) that occurs in an article's search text counts once, and
articles are ranked by how many distinct words they share with the speech, then by use. Only
articles valid now and meant for the channel are suggested ("published").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.knowledge.models import Article
from ivr.knowledge.search import for_channel, valid_at
from ivr.knowledge.text import compact, strip_particle
from ivr.search import time_limited

MAX_TEXT = 2000  # characters of the running transcript looked at (its end)
MAX_TERMS = 16  # the last distinct spoken words matched
MAX_WORD = 64  # longer "words" are not speech (the search's own limit)
CANDIDATES = 200  # articles scored per request at most
WORD = re.compile(r"[\w-]+")
HANGUL_WORD = re.compile(r"^[\uac00-\ud7a3]+$")
# Said in every call; matching them would suggest whatever article happens to contain them.
CONVERSATIONAL = frozenset({
    "안녕하세요", "감사합니다", "고맙습니다", "네", "예", "아니요", "아니오", "그리고", "그런데", "그래서", "혹시",
    "저기요", "제가", "저는", "이거", "그거", "저거", "있어요", "없어요", "있습니다", "없습니다", "해요", "합니다",
    "싶어요", "싶습니다", "궁금해요", "궁금합니다", "알고", "어떻게", "언제", "어디", "무엇", "뭐", "좀", "지금",
    "확인해", "드리겠습니다", "말씀", "잠시만요", "다산콜센터입니다", "서울시", "hello", "thank", "thanks", "you",
    "the", "and", "please", "what", "when", "where", "how", "is", "are", "my", "i", "a", "to", "of",
})


@dataclass(frozen=True)
class Suggestion:
    article: Article
    matched: list[str]  # the spoken words found in the article


def spoken_terms(text: str) -> list[str]:
    """The last distinct content words of ``text``, in the form article search text is kept."""
    terms: list[str] = []
    for word in reversed(WORD.findall(text[-MAX_TEXT:])):
        term = strip_particle(compact(word))
        if term in CONVERSATIONAL or term in terms:
            continue
        if len(term) < (2 if HANGUL_WORD.match(term) else 3) or len(term) > MAX_WORD:
            continue
        terms.append(term)
        if len(terms) == MAX_TERMS:
            break
    return terms


async def suggest_articles(session: AsyncSession, text: str, *, channel: str = "voice", limit: int = 5,
                           now: datetime | None = None) -> list[Suggestion]:
    """The articles sharing the most spoken words with ``text`` (none when it has no content word)."""
    terms = spoken_terms(text)
    if not terms:
        return []
    stmt = (select(Article)
            .where(or_(*(Article.search_text.contains(t, autoescape=True) for t in terms)))
            .where(valid_at(now or datetime.now(UTC)), for_channel(session, channel))
            .order_by(Article.usage_count.desc(), Article.id.desc()).limit(CANDIDATES))
    async with time_limited(session):
        candidates = list((await session.execute(stmt)).scalars())
    scored = [Suggestion(a, [t for t in terms if t in a.search_text]) for a in candidates]
    # most words shared first; then longer words (more specific), then most used (query order)
    scored.sort(key=lambda s: (len(s.matched), sum(map(len, s.matched))), reverse=True)
    return [s for s in scored if s.matched][:limit]
