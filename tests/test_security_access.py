"""Agents see and act only on their own contacts, their queues' and the shared text inbox;
supervisors and reviewers see all, and every read of a record not one's own is audited
(issue #21 item 6). Search queries are bounded: distinct words, at most a few, and a time
limit on the statement (item 9). Real app, real socket, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

from ivr.db import Database
from ivr.db.models import Agent, AuditLog, Channel, Citizen, Contact, Message
from ivr.messaging.models import ChatConversation
from ivr.search import MAX_TERMS, SearchError, search_terms, time_limited
from tests.support.console import Console


async def _others(console: Console) -> dict[str, int]:
    """A zh-queue call and an SMS thread of lee.junho's, and an IVR-only call (no queue)."""
    async with console.ctx.db.transaction() as session:
        lee = (await session.execute(select(Agent).where(Agent.username == "lee.junho"))).scalar_one()
        texter = Citizen(identity_kind="phone", identity="+821077776666")
        session.add(texter)
        await session.flush()
        zh = Contact(channel=Channel.voice, citizen_id=texter.id, queue="zh", agent_id=lee.id, notes="中文 문의")
        sms = Contact(channel=Channel.sms, citizen_id=texter.id, agent_id=lee.id)
        ivr = Contact(channel=Channel.voice, citizen_id=texter.id)
        session.add_all([zh, sms, ivr])
        await session.flush()
        session.add(Message(contact_id=sms.id, direction="in", channel=Channel.sms, sender=texter.identity,
                            body="개인 정보가 담긴 문자", provider="generic", provider_message_id="m-lee"))
        chat = ChatConversation(token="t" * 32, contact_id=sms.id, citizen_id=texter.id, status="active",
                                agent_username="lee.junho", queued_at=datetime.now(UTC))
        session.add(chat)
        await session.flush()
        return {"zh": zh.id, "sms": sms.id, "ivr": ivr.id, "chat": chat.id}


async def _audit(console: Console, action: str) -> list[tuple[str, str]]:
    async with console.ctx.db.session() as session:
        return [(a.actor, a.target) for a in (await session.execute(
            select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))).scalars()]


async def test_agents_reach_only_their_own_and_their_queues_contacts(console: Console, login: Any) -> None:
    ids, other = console.ids, await _others(console)
    kim = await login("kim.minji")
    # Not kim's: another agent's call in a queue kim does not serve, their SMS thread, a call
    # that never reached a queue, and another agent's live chat.
    for path in (f"/api/console/contacts/{other['zh']}", f"/api/console/contacts/{other['ivr']}",
                 f"/api/messaging/contacts/{other['sms']}/messages", f"/api/messaging/contacts/{other['zh']}/messages",
                 f"/api/messaging/chats/{other['chat']}"):
        status, body = await kim.call("GET", path)
        assert status == 403, (path, body)
        assert "개인 정보" not in str(body) and "中文" not in str(body)
    async with console.ctx.db.session() as session:
        before = (await session.execute(select(func.count()).select_from(Message))).scalar_one()
    for contact_id in (other["sms"], other["zh"]):
        status, _ = await kim.call("POST", f"/api/messaging/contacts/{contact_id}/reply", json={"body": "hello"})
        assert status == 403
    async with console.ctx.db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Message))).scalar_one() == before
    assert await console.ctx.bus.consume("sms.outbound", "t", "t", count=10, block=1) == []

    # Her inbox lists the shared text inbox, not lee.junho's SMS thread.
    status, body = await kim.call("GET", "/api/console/inbox")
    assert status == 200 and [c["id"] for c in body["items"]] == [ids["sms"]]
    status, body = await (await login("super1")).call("GET", "/api/console/inbox")
    assert status == 200 and {c["id"] for c in body["items"]} == {ids["sms"], other["sms"]}

    # Kim's own call, a call of her queue (general-ko, taken by lee.junho) and the shared inbox.
    assert (await kim.call("GET", f"/api/console/contacts/{ids['current']}"))[0] == 200
    assert (await kim.call("GET", f"/api/console/contacts/{ids['recorded']}"))[0] == 200
    assert (await kim.call("GET", f"/api/messaging/contacts/{ids['sms']}/messages"))[0] == 200
    status, body = await kim.call("POST", f"/api/messaging/contacts/{ids['sms']}/reply", json={"body": "확인했습니다"})
    assert status == 202, body
    # Reading a record that is not her own leaves a trace; her own does not need one.
    async with console.ctx.db.session() as session:
        viewed = [(a.target, a.data.get("own")) for a in (await session.execute(
            select(AuditLog).where(AuditLog.action == "contact_viewed").order_by(AuditLog.id))).scalars()]
    assert viewed == [(f"contact:{ids['current']}", True), (f"contact:{ids['recorded']}", False)]
    assert ("kim.minji", f"contact:{ids['sms']}") in await _audit(console, "record_read")

    # Supervisors and reviewers see everything, and each such read is audited.
    boss, reviewer = await login("super1"), await login("review1")
    assert (await boss.call("GET", f"/api/console/contacts/{other['zh']}"))[0] == 200
    status, body = await boss.call("GET", f"/api/messaging/chats/{other['chat']}")
    assert status == 200 and body["agent"] == "lee.junho"
    status, body = await reviewer.call("GET", f"/api/messaging/contacts/{other['sms']}/messages")
    assert status == 200 and [m["body"] for m in body["messages"]] == ["개인 정보가 담긴 문자"]
    reads = await _audit(console, "record_read")
    assert ("super1", f"chat:{other['chat']}") in reads and ("review1", f"contact:{other['sms']}") in reads


async def test_search_words_are_capped_and_deduplicated(console: Console, login: Any) -> None:
    kim = await login("kim.minji")
    many = " ".join(f"w{i}" for i in range(990))
    for path in ("/api/console/kb", "/api/search"):
        status, body = await (await login("admin1")).call("GET", path, params={"q": many})
        assert status == 400 and f"at most {MAX_TERMS}" in body["error"], (path, body)
    reviewer = await login("review1")
    status, body = await reviewer.call("GET", "/api/console/recordings", params={"q": many})
    assert status == 400 and "words" in body["error"]
    # The same word 200 times is one word.
    status, body = await kim.call("GET", "/api/console/kb", params={"q": " ".join(["버스"] * 200)})
    assert status == 200 and body["items"], body
    status, body = await kim.call("GET", "/api/console/kb", params={"q": "x" * 65})
    assert status == 400


def test_search_terms() -> None:
    assert search_terms("버스 버스 Bus bus BUS 노선%_") == ["버스", "Bus", "노선"]
    assert search_terms("  ") == []
    with pytest.raises(SearchError):
        search_terms(" ".join(str(i) for i in range(MAX_TERMS + 1)))


async def test_search_statements_are_time_limited(db: Database) -> None:
    slow = ("SELECT pg_sleep(30)" if db.dialect == "postgresql" else
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) "
            "SELECT count(*) FROM n")
    async with db.session() as session:
        with pytest.raises(SearchError) as stopped:
            async with time_limited(session, 0.2):
                await session.execute(text(slow))
        assert stopped.value.status == 422
    async with db.session() as session:
        async with time_limited(session, 5):
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        if db.dialect == "postgresql":  # the limit was for the search only
            assert (await session.execute(text("SHOW statement_timeout"))).scalar_one() == "0"
