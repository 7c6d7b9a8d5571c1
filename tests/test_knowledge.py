"""The knowledge base on SQLite and PostgreSQL: Korean search tolerant of spacing and particles,
validity and channels, revisions, a draft from a past contact, insertion with variables, usage
counts, roles and bad input (the API on a real socket)."""

from __future__ import annotations

import shutil
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.bus import MemoryBus
from ivr.datafolder import DEFAULT_MENUS
from ivr.db import Database
from ivr.engine.menu import load_menus
from ivr.knowledge import store
from ivr.knowledge.models import Article
from ivr.knowledge.search import article_terms, search_articles
from ivr.knowledge.text import fill, strip_particle
from ivr.search import MAX_TERMS, SearchError
from ivr.yamlfile import DataError
from tests.support.console import Console
from tests.support.ivr_harness import IvrHarness

BUS = {"key": "bus-stop-moved", "texts": {
    "ko": {"title": "버스 정류장 이전 안내", "body": "{name}님, 버스 정류장이 옮겨졌습니다. 접수번호 {tracking_number}"},
    "en": {"title": "Bus stop moved", "body": "Dear {name}, the bus stop has moved. Reference {tracking_number}"}},
    "tags": ["교통", "버스"], "channels": ["sms", "chat", "ivr"]}


def test_particles_and_spacing() -> None:
    assert strip_particle("정류장이") == "정류장"
    assert strip_particle("정류장에서") == "정류장"
    assert strip_particle("아이") == "아이"  # two syllables stay
    assert strip_particle("bus") == "bus"
    assert article_terms("버스정류장") == ["버스정류장"]
    assert article_terms("버스 정류장에서") == ["버스", "정류장"]
    with pytest.raises(SearchError):  # the shared cap on words holds here too
        article_terms(" ".join(f"w{i}" for i in range(MAX_TERMS + 1)))
    assert fill("{name}님 {tracking_number}", {"name": "홍길동", "tracking_number": None}) == (
        "홍길동님 {tracking_number}", ["tracking_number"])


async def _add(db: Database, body: dict[str, Any], author: str = "super1") -> Article:
    async with db.transaction() as session:
        return await store.save(session, store.parse(body), author)


async def test_search_on_both_databases(db: Database) -> None:
    await _add(db, BUS)
    await _add(db, {"key": "waste", "texts": {"ko": {"title": "쓰레기 수거일", "body": "월요일과 목요일에 수거합니다"}}})
    past = datetime.now(UTC) - timedelta(days=10)
    await _add(db, {"key": "old-bus", "texts": {"ko": {"title": "옛 버스 정류장", "body": "폐지된 안내"}},
                    "valid_from": (past - timedelta(days=5)).isoformat(), "valid_to": past.isoformat()})
    async with db.session() as session:
        keys = lambda found: [a.key for a in found]  # noqa: E731
        assert keys(await search_articles(session, "버스정류장")) == ["bus-stop-moved"]
        assert keys(await search_articles(session, "버스 정류장이")) == ["bus-stop-moved"]
        assert keys(await search_articles(session, "정류장에서 BUS")) == ["bus-stop-moved"]  # English text too
        assert keys(await search_articles(session, "수거")) == ["waste"]  # two syllables: scanned
        assert keys(await search_articles(session, "수거 버스")) == []
        assert set(keys(await search_articles(session, "정류장", include_invalid=True))) == {"bus-stop-moved", "old-bus"}
        assert keys(await search_articles(session, "버스", channel="voice")) == []
        assert keys(await search_articles(session, "버스", channel="sms")) == ["bus-stop-moved"]
        assert keys(await search_articles(session, "수거", channel="sms")) == ["waste"]  # no list: every channel
        assert (await store.by_key(session, "bus-stop-moved", "ivr")) is not None
        assert (await store.by_key(session, "bus-stop-moved", "voice")) is None
        assert (await store.by_key(session, "old-bus", "ivr")) is None


async def test_articles_api(console: Console, login: Any) -> None:
    sup, agent = await login("super1"), await login("kim.minji")
    status, _ = await agent.call("POST", "/api/console/kb/articles", json=BUS)
    assert status == 403  # agents read, supervisors write
    for wrong, field in (({**BUS, "texts": {"en": BUS["texts"]["en"]}}, "ko"),
                         ({**BUS, "channels": ["fax"]}, "channels"),
                         ({**BUS, "key": "Bad Key"}, "key"),
                         ({**BUS, "texts": {"ko": {"title": "t", "body": "{nmae}"}}}, "nmae"),
                         ({**BUS, "tags": ["a\x00b"]}, "NUL")):
        status, body = await sup.call("POST", "/api/console/kb/articles", json=wrong)
        assert status == 400 and field in body["error"], body
    status, art = await sup.call("POST", "/api/console/kb/articles", json=BUS)
    assert status == 201 and art["revision"] == 1 and art["owner"] == "super1"
    # Meant for the IVR: its sound is made in each language, from the body without variables.
    assert art["spoken"] == {"languages": ["ko", "en"]}
    sound = console.ctx.settings.asterisk.sounds_dir / "ko" / "dasan" / "kb-bus-stop-moved.wav"
    with wave.open(str(sound)) as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1) and w.getnframes() > 8000
    status, body = await sup.call("POST", "/api/console/kb/articles", json=BUS)
    assert status == 409  # the key is taken
    status, body = await sup.call("POST", "/api/console/kb/articles", json={
        "key": "dated", "texts": {"ko": {"title": "기간 안내", "body": "기간이 있는 문서"}},
        "valid_from": "2026-12-01", "valid_to": "2026-12-31"})
    assert status == 201  # plain dates are the site's days (Asia/Seoul), the last one included
    assert datetime.fromisoformat(body["valid_from"]) == datetime(2026, 11, 30, 15, tzinfo=UTC)
    assert datetime.fromisoformat(body["valid_to"]) == datetime(2026, 12, 31, 15, tzinfo=UTC)
    changed = {**BUS, "tags": ["교통"], "texts": {**BUS["texts"], "ko": {**BUS["texts"]["ko"], "title": "정류장 이전"}}}
    status, body = await sup.call("PUT", f"/api/console/kb/articles/{art['id']}", json=changed)
    assert status == 200 and body["revision"] == 2
    assert sound.exists()
    status, body = await sup.call("PUT", f"/api/console/kb/articles/{art['id']}",
                                  json={**changed, "channels": ["sms", "chat"]})
    assert status == 200 and body["revision"] == 3 and not sound.exists()  # off the IVR: its sound goes
    status, body = await sup.call("PUT", f"/api/console/kb/articles/{art['id']}", json=changed)
    assert body["revision"] == 4 and sound.exists()
    status, body = await agent.call("GET", f"/api/console/kb/articles/{art['id']}")
    assert [r["revision"] for r in body["revisions"]] == [4, 3, 2, 1]
    assert body["revisions"][3]["content"]["texts"]["ko"]["title"] == "버스 정류장 이전 안내"
    assert body["revisions"][1]["content"]["channels"] == ["sms", "chat"]

    status, body = await agent.call("GET", "/api/console/kb/articles", params={"q": "버스정류장"})
    assert status == 200 and [a["key"] for a in body["items"]] == ["bus-stop-moved"]
    status, body = await agent.call("GET", "/api/console/kb/articles",
                                    params={"q": " ".join(f"w{i}" for i in range(MAX_TERMS + 1))})
    assert status == 400  # the shared cap
    status, body = await agent.call("GET", "/api/console/kb/articles", params={"q": "버스\x00정류장"})
    assert status == 200  # NUL dropped, never handed to PostgreSQL
    # The past-contacts search still answers beside it.
    status, body = await agent.call("GET", "/api/console/kb", params={"q": "470번"})
    assert status == 200 and body["items"]

    # Insert into the reply to the SMS contact: tracking number filled, the missing name named.
    status, body = await agent.call("POST", f"/api/console/kb/articles/{art['id']}/use",
                                    json={"contact_id": console.ids["sms"]})
    assert status == 200, body
    assert "접수번호 T-SMS" in body["text"] and body["missing"] == ["name"] and body["usage_count"] == 1
    status, body = await agent.call("POST", f"/api/console/kb/articles/{art['id']}/use",
                                    json={"contact_id": console.ids["sms"], "language": "en"})
    assert body["text"].startswith("Dear {name}") and "Reference T-SMS" in body["text"]
    reviewer = await login("review1")
    status, body = await reviewer.call("POST", f"/api/console/kb/articles/{art['id']}/use",
                                       json={"contact_id": console.ids["sms"]})
    assert status == 403  # reviewers do not answer citizens
    status, body = await agent.call("POST", f"/api/console/kb/articles/{art['id']}/use", json={"contact_id": "x"})
    assert status == 400
    status, body = await agent.call("GET", f"/api/console/kb/articles/{art['id']}")
    assert body["usage_count"] == 2

    # One click: an article drafted from a past contact's notes.
    status, body = await sup.call("POST", f"/api/console/kb/from-contact/{console.ids['recorded']}")
    assert status == 201 and body["texts"]["ko"]["body"] == "470번 버스 노선 변경 안내"
    assert body["texts"]["ko"]["title"] == "교통 > 버스" and body["source_contact_id"] == console.ids["recorded"]
    status, _ = await sup.call("POST", "/api/console/kb/from-contact/999999")
    assert status == 404
    status, page = await sup.call("GET", "/console/knowledge")
    assert status == 200 and "Knowledge base" in page  # super1 reads English


async def test_ivr_answer_node_reads_an_article(db: Database, tmp_path: Path) -> None:
    """An answer node names an article; the IVR plays the article's sound after the node's prompts."""
    menus_dir = tmp_path / "menus"
    shutil.copytree(DEFAULT_MENUS, menus_dir)
    main = menus_dir / "main.yaml"
    text = main.read_text(encoding="utf-8")
    node = "  transport-lost:\n    kind: answer\n    topic: transport\n    prompt: transport-lost-info\n"
    assert node in text
    main.write_text(text.replace(node, node.replace("kind: answer", "kind: answer\n    article: Bad.Key")),
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"main.yaml:\d+: nodes.transport-lost.article"):
        load_menus(main)  # an article key is also a sound name: plain letters, digits, - and _
    main.write_text(text.replace(node, node.replace("kind: answer", "kind: answer\n    article: bus-stop-moved")),
                    encoding="utf-8")
    harness = await IvrHarness(db, MemoryBus(), menus_dir=menus_dir).start()
    try:
        log = await harness.dial("1 1", callerid="010-5555-0101")
    finally:
        await harness.stop()
    heard = log.heard
    assert heard.index("dasan/kb-bus-stop-moved") == heard.index("dasan/transport-lost-info") + 1, heard
    assert heard[-1] == "dasan/goodbye"


async def test_sms_keyword_is_answered_from_an_article(db_url: str, tmp_path: Path) -> None:
    """A citizen's SMS that is a configured keyword gets the article (tracking number filled in,
    the citizen's name when known, else the language's word for someone: "고객님", never "님")
    after the acknowledgement; other texts and expired articles do not."""
    from ivr.messaging.store import OUTBOUND_STREAM
    from tests.support.messaging import messaging_context, post_signed
    from tests.support.web import serve

    async with messaging_context(db_url, tmp_path / "var", "kw-secret") as ctx:
        ctx.settings.sms.keyword_articles = {"버스정류장": "bus-stop-moved", "옛정류장": "old-bus"}
        await _add(ctx.db, BUS)
        from ivr import records
        async with ctx.db.transaction() as session:  # a citizen whose name an agent noted earlier
            await records.get_or_create_citizen(session, "phone", "+821077778888", display_name="홍길동")
        past = datetime.now(UTC) - timedelta(days=1)
        await _add(ctx.db, {"key": "old-bus", "texts": {"ko": {"title": "옛", "body": "지난 안내"}},
                            "valid_from": (past - timedelta(days=5)).isoformat(), "valid_to": past.isoformat()})
        async with serve(ctx) as base, aiohttp.ClientSession() as http:
            replies = []
            for i, (sender, body) in enumerate((("+821011112222", "버스 정류장"), ("+821033334444", "버스 정류장이 어디죠"),
                                                ("+821055556666", "옛정류장"), ("+821077778888", "버스정류장"))):
                resp = await post_signed(http, f"{base}/webhooks/sms", {
                    "message_id": f"kw-{i}", "from": sender, "to": "120", "body": body}, "kw-secret")
                assert resp.status == 200
                replies.append((await resp.json())["tracking_number"])
        jobs = [j.data for j in await ctx.bus.consume(OUTBOUND_STREAM, "t", "t", count=100, block=0.01)]
        kb = [j for j in jobs if j.get("kind") == "kb"]
        assert [j["kind"] for j in jobs].count("ack") == 4
        assert kb == [{"to": "+821011112222", "contact_id": kb[0]["contact_id"], "kind": "kb",
                       "body": f"고객님, 버스 정류장이 옮겨졌습니다. 접수번호 {replies[0]}"},
                      {"to": "+821077778888", "contact_id": kb[1]["contact_id"], "kind": "kb",
                       "body": f"홍길동님, 버스 정류장이 옮겨졌습니다. 접수번호 {replies[3]}"}]
        async with ctx.db.session() as session:
            article = await store.by_key(session, "bus-stop-moved", "sms")
            assert article is not None and article.usage_count == 2


async def test_variables_come_from_the_contact(db: Database) -> None:
    """{name} is the citizen's name (a chat's hello, an SMS sender's known name), {tracking_number}
    the contact's, {phone} only for phone identities."""
    from ivr.db.models import Channel, Citizen, Contact

    article = await _add(db, BUS)
    async with db.transaction() as session:
        citizen = Citizen(identity_kind="chat", identity="chat-abc", display_name="홍길동")
        session.add(citizen)
        await session.flush()
        contact = Contact(channel=Channel.chat, citizen_id=citizen.id, tracking_number="T-CHAT", queue="chat-ko")
        session.add(contact)
        await session.flush()
        values = await store.values_for(session, contact.id)
        assert values == {"tracking_number": "T-CHAT", "name": "홍길동", "phone": None, "queue": "chat-ko"}
        loaded = await session.get(Article, article.id)
        assert loaded is not None
        text, missing, count = await store.use(session, loaded, "ko", values)
    assert text == "홍길동님, 버스 정류장이 옮겨졌습니다. 접수번호 T-CHAT" and missing == [] and count == 1


async def test_a_contact_without_notes_drafts_from_its_transcript(db: Database) -> None:
    """One click on a recorded call nobody wrote notes for: the body is its transcript, in order."""
    from ivr.db.models import Channel, Contact, Recording, TranscriptSegment

    async with db.transaction() as session:
        contact = Contact(channel=Channel.voice, topic="transport", notes="  ")
        session.add(contact)
        await session.flush()
        recording = Recording(contact_id=contact.id, path="kb/draft.wav")
        session.add(recording)
        await session.flush()
        session.add_all([TranscriptSegment(recording_id=recording.id, contact_id=contact.id, start=s, end=s + 2, text=t)
                         for s, t in ((4.0, "정류장이 옮겨졌습니다"), (0.0, "버스 정류장 문의드립니다"))])
        contact_id = contact.id
    async with db.session() as session:
        draft = await store.draft_from_contact(session, contact_id)
    assert draft is not None
    # No category: the title is the body's first line (Korean), the topic code only a tag.
    assert draft["texts"]["ko"] == {"title": "버스 정류장 문의드립니다", "body": "버스 정류장 문의드립니다\n정류장이 옮겨졌습니다"}
    assert draft["tags"] == ["transport"] and draft["key"].startswith(f"contact-{contact_id}-")
    async with db.transaction() as session:  # the draft saves as it is
        saved = await store.save(session, store.parse(draft), "super1")
    assert saved.revision == 1
    async with db.transaction() as session:  # a category whose code is the topic names it
        from ivr.db.models import Category
        session.add(Category(code="transport", name_ko="교통", name_en="Transport"))
    async with db.session() as session:
        named = await store.draft_from_contact(session, contact_id)
    assert named is not None and named["texts"]["ko"]["title"] == "교통"
