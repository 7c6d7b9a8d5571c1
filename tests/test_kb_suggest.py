"""Knowledge-base suggestions from running speech (issue #19), on SQLite and PostgreSQL: spoken
words matched loosely (particles, spacing, conversational words), ranked by words shared,
published articles only, for the channel. The agent page's use of it is in
tests/test_live_partials_browser.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ivr.db import Database
from ivr.knowledge import store
from ivr.knowledge.suggest import MAX_TERMS, spoken_terms, suggest_articles

BUS = {"key": "bus-route", "tags": ["버스"], "texts": {
    "ko": {"title": "버스 노선 변경", "body": "470번 버스 노선이 바뀌었습니다"}}}
STOP = {"key": "bus-stop", "texts": {"ko": {"title": "버스 정류장 이전", "body": "정류장이 옮겨졌습니다"}}}
WASTE = {"key": "waste", "channels": ["voice"], "texts": {
    "ko": {"title": "쓰레기 수거일", "body": "월요일과 목요일에 수거합니다"},
    "en": {"title": "Waste collection", "body": "Mondays and Thursdays"}}}


def test_spoken_terms() -> None:
    # particles off, conversational words and one-syllable words out, latest first, no repeats
    assert spoken_terms("안녕하세요 네 버스 노선이 바뀌었나요 버스가") == ["버스", "바뀌었나요", "노선"]
    assert spoken_terms("the waste bin is full") == ["full", "bin", "waste"]
    assert spoken_terms("네 감사합니다") == []
    assert spoken_terms("x" * 65) == []
    assert len(spoken_terms(" ".join(f"단어{i}" for i in range(50)))) == MAX_TERMS


async def _add(db: Database, body: dict[str, Any]) -> None:
    async with db.transaction() as session:
        await store.save(session, store.parse(body), "super1")


async def test_suggestions_on_both_databases(db: Database) -> None:
    for article in (BUS, STOP, WASTE):
        await _add(db, article)
    past = datetime.now(UTC) - timedelta(days=10)
    await _add(db, {"key": "old-bus-route", "texts": {"ko": {"title": "옛 버스 노선", "body": "폐지된 노선"}},
                    "valid_from": (past - timedelta(days=5)).isoformat(), "valid_to": past.isoformat()})
    await _add(db, {"key": "sms-bus", "channels": ["sms"], "texts": {"ko": {"title": "버스 노선 문자", "body": "버스"}}})
    async with db.session() as session:
        async def keys(text: str, channel: str = "voice") -> list[str]:
            return [s.article.key for s in await suggest_articles(session, text, channel=channel)]

        # two shared words (버스, 노선) rank above one (버스); expired and SMS-only articles never come
        assert await keys("버스 노선이 바뀌었는지 궁금해요") == ["bus-route", "bus-stop"]
        assert await keys("정류장에서 버스를") == ["bus-stop", "bus-route"]
        assert await keys("쓰레기 수거는 언제예요") == ["waste"]
        assert await keys("WASTE collection") == ["waste"]  # any language's text, case-folded
        assert await keys("네 감사합니다 안녕하세요") == []
        assert await keys("") == []
        assert "sms-bus" in await keys("버스 노선", channel="sms")
        found = await suggest_articles(session, "470번 버스 노선")
        assert found[0].article.key == "bus-route" and sorted(found[0].matched) == ["470번", "노선", "버스"]
