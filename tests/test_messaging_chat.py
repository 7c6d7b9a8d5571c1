"""Web chat end to end over real WebSockets: queue positions, an agent taking chats, lines
both ways, a citizen reconnecting into the same conversation, everything saved on the
contact; on SQLite and PostgreSQL, with the in-process and the Redis bus."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ivr import records
from ivr.bus import Bus
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Channel, Citizen, Contact, ContactEvent, Message
from ivr.messaging.models import ChatConversation
from tests.support.messaging import sidecar_settings, sign_in
from tests.support.web import serve


@pytest.fixture
async def ctx(db_url: str, bus: Bus, tmp_path: Path) -> AsyncIterator[AppContext]:
    settings = sidecar_settings(db_url, tmp_path / "var")
    settings.sms.chat_max_per_agent = 1
    database = Database(db_url)
    yield AppContext(settings, database, bus)
    await database.dispose()


async def next_frame(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 20.0) -> dict[str, Any]:
    """The next frame of ``kind`` (others, such as queue updates, are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive_json()
            if frame.get("type") == kind:
                return frame


async def test_chat_queue_agent_reconnect_and_record(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens, aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent_http:
        page = await citizens.get(f"{base}/chat")
        html = await page.text()
        assert page.status == 200 and "120 채팅 상담" in html and "Chat with 120" in html

        first = await citizens.ws_connect(f"{base}/chat/ws")
        await first.send_json({"type": "hello", "language": "ko"})
        welcome = await next_frame(first, "welcome")
        assert welcome["status"] == "waiting" and welcome["position"] == 1 and welcome["messages"] == []
        token, identity = welcome["token"], welcome["identity"]

        second = await citizens.ws_connect(f"{base}/chat/ws")
        await second.send_json({"type": "hello", "language": "en", "phone": "+82 10 4444 5555"})
        welcome2 = await next_frame(second, "welcome")
        assert welcome2["position"] == 2

        await first.send_json({"type": "message", "id": "c1", "body": "버스 노선 문의합니다"})
        echo = await next_frame(first, "message")
        assert echo["from"] == "citizen" and echo["body"] == "버스 노선 문의합니다"
        # The citizen's connection drops; they come back with the token: same conversation.
        await first.close()
        first = await citizens.ws_connect(f"{base}/chat/ws")
        await first.send_json({"type": "hello", "token": token, "identity": identity})
        resumed = await next_frame(first, "welcome")
        assert resumed["resumed"] is True and resumed["id"] == welcome["id"]
        assert [m["body"] for m in resumed["messages"]] == ["버스 노선 문의합니다"]
        # A line resent after the reconnect (same client id) is stored once.
        await first.send_json({"type": "message", "id": "c1", "body": "버스 노선 문의합니다"})

        # An agent comes online: the oldest waiting chat is theirs, the other moves up.
        await sign_in(agent_http, base, ctx)
        desk = await agent_http.ws_connect(f"{base}/api/messaging/agent/ws")
        hello = await next_frame(desk, "hello")
        assert hello["agent"] == "agent1"
        assigned = await next_frame(desk, "assigned")
        conversation = assigned["conversation"]
        assert conversation["id"] == welcome["id"]
        assert [m["body"] for m in conversation["messages"]] == ["버스 노선 문의합니다"]
        told = await next_frame(first, "assigned")
        assert told["agent"] == "agent1"
        moved = await next_frame(second, "queue")
        while moved["position"] != 1:
            moved = await next_frame(second, "queue")

        await desk.send_json({"type": "message", "conversation_id": conversation["id"], "body": "몇 번 버스인가요?"})
        line = await next_frame(first, "message")
        assert line["from"] == "agent" and line["body"] == "몇 번 버스인가요?"
        await first.send_json({"type": "message", "id": "c2", "body": "470번입니다"})
        heard = await next_frame(desk, "message")
        while heard["body"] != "470번입니다":
            heard = await next_frame(desk, "message")
        # The second chat is not this agent's (capacity 1): refused.
        await desk.send_json({"type": "message", "conversation_id": welcome2["id"], "body": "x"})
        assert "not yours" in (await next_frame(desk, "error"))["error"]

        await desk.send_json({"type": "close", "conversation_id": conversation["id"]})
        assert (await next_frame(first, "closed"))["by"] == "agent1"
        # Capacity is free again: the second chat comes to the agent.
        assigned2 = await next_frame(desk, "assigned")
        assert assigned2["conversation"]["id"] == welcome2["id"]
        await desk.close()
        await first.close()
        await second.close()

        async with agent_http.get(f"{base}/api/messaging/chats/{welcome['id']}") as r:
            assert (await r.json())["status"] == "closed"

    async with ctx.db.session() as session:
        conv = await session.get(ChatConversation, welcome["id"])
        lines = (await session.execute(select(Message).where(Message.contact_id == conv.contact_id)
                                       .order_by(Message.id))).scalars().all()
        contact = await session.get(Contact, conv.contact_id)
        kinds = (await session.execute(select(ContactEvent.kind).where(
            ContactEvent.contact_id == contact.id).order_by(ContactEvent.id))).scalars().all()
    assert contact.channel == Channel.chat and contact.answered_at is not None
    assert [(m.direction, m.body) for m in lines] == [
        ("in", "버스 노선 문의합니다"), ("out", "몇 번 버스인가요?"), ("in", "470번입니다")]
    assert kinds == ["chat_started", "chat_assigned", "chat_closed"]


async def test_a_phone_number_in_a_chat_is_only_a_claim_until_its_code_is_typed(ctx: AppContext) -> None:
    """Issue #21 item 5: a hello naming someone's phone number got their open inquiry and its
    tracking number. Now the chat is its own contact; an SMS code goes to the number, and only
    the right code (before it expires, within five tries) ties the chat to that person."""
    async with ctx.db.transaction() as session:
        citizen = await records.get_or_create_citizen(session, "phone", "+821066667777")
        sms = await records.open_contact(session, Channel.sms, citizen)
        sms.tracking_number = "T-THEIRS"
        session.add(Message(contact_id=sms.id, direction="in", channel=Channel.sms, sender=citizen.identity,
                            body="개인적인 문자 내용", provider="generic", provider_message_id="own-1"))
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base}/chat/ws")
        await ws.send_json({"type": "hello", "phone": "+82 10 6666 7777"})
        welcome = await next_frame(ws, "welcome")
        assert welcome["contact_id"] != sms.id and welcome["tracking_number"] != "T-THEIRS"
        assert welcome["messages"] == [] and "개인적인" not in str(welcome)
        assert welcome["phone_verification"] == "sent" and welcome["phone_verified"] is False
        [job] = await ctx.bus.consume("sms.outbound", "t", "t", count=5, block=5)
        assert job.data["to"] == "+821066667777" and job.data["kind"] == "chat_code"
        code = re.search(r"\b(\d{6})\b", job.data["body"]).group(1)  # type: ignore[union-attr]
        wrong = "000000" if code != "000000" else "111111"
        await ws.send_json({"type": "verify", "code": wrong})
        assert (await next_frame(ws, "error"))["error"] == "wrong or expired code"
        await ws.send_json({"type": "verify", "code": code})
        assert (await next_frame(ws, "verified"))["phone"] == "+821066667777"
        await ws.send_json({"type": "message", "id": "x1", "body": "문자로 보낸 건입니다"})
        await next_frame(ws, "message")
        await ws.close()
        refused = await http.get(f"{base}/chat/ws")
        assert refused.status == 400 and "WebSocket" in (await refused.json())["error"]
        cross = await http.get(f"{base}/chat/ws", headers={"Origin": "https://evil.example",
                                                           "Upgrade": "websocket", "Connection": "Upgrade"})
        assert cross.status == 403
        # A second chat claiming the same number: its own contact again, and after five wrong
        # codes even the right one is refused.
        other = await http.ws_connect(f"{base}/chat/ws")
        await other.send_json({"type": "hello", "phone": "010-6666-7777"})
        second = await next_frame(other, "welcome")
        assert second["contact_id"] not in (sms.id, welcome["contact_id"])
        [job] = await ctx.bus.consume("sms.outbound", "t", "t", count=5, block=5)
        code = re.search(r"\b(\d{6})\b", job.data["body"]).group(1)  # type: ignore[union-attr]
        for _ in range(5):
            await other.send_json({"type": "verify", "code": "000000" if code != "000000" else "111111"})
            await next_frame(other, "error")
        await other.send_json({"type": "verify", "code": code})
        assert (await next_frame(other, "error"))["error"] == "wrong or expired code"
        await other.close()
    async with ctx.db.session() as session:
        chat_contact = await session.get(Contact, welcome["contact_id"])
        assert chat_contact is not None and chat_contact.citizen_id == citizen.id  # proven: theirs now
        assert chat_contact.id != sms.id
        unproven = await session.get(Contact, second["contact_id"])
        assert unproven is not None and unproven.citizen_id != citizen.id


async def test_a_first_frame_that_is_not_a_hello_is_refused(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens:
        for first, error in [("not json", "first frame must be a JSON hello"),
                             ('{"type": "message", "body": "hi"}', 'first frame must be {"type": "hello"}'),
                             ("[1, 2]", 'first frame must be {"type": "hello"}')]:
            ws = await citizens.ws_connect(f"{base}/chat/ws")
            await ws.send_str(first)
            assert await ws.receive_json(timeout=20) == {"type": "error", "error": error}
            assert (await ws.receive(timeout=20)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await ws.close()
    async with ctx.db.session() as session:
        assert (await session.execute(select(ChatConversation))).scalars().all() == []  # nothing opened


async def test_agent_accepts_a_waiting_chat_and_the_citizen_closes_it(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens, aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent_http:
        busy = await citizens.ws_connect(f"{base}/chat/ws")
        await busy.send_json({"type": "hello"})
        await next_frame(busy, "welcome")
        await sign_in(agent_http, base, ctx)
        desk = await agent_http.ws_connect(f"{base}/api/messaging/agent/ws")
        assert (await next_frame(desk, "assigned"))["conversation"]["status"] == "active"  # capacity 1: full

        waiting = await citizens.ws_connect(f"{base}/chat/ws")
        await waiting.send_json({"type": "hello", "language": "en"})
        welcome = await next_frame(waiting, "welcome")
        assert welcome["status"] == "waiting"  # not dispatched: the agent has no room
        # The agent takes it anyway (accept), once; a second accept and an unknown id are refused.
        await desk.send_json({"type": "accept", "conversation_id": welcome["id"]})
        assert (await next_frame(desk, "assigned"))["conversation"]["id"] == welcome["id"]
        assert (await next_frame(waiting, "assigned"))["agent"] == "agent1"
        await desk.send_json({"type": "accept", "conversation_id": welcome["id"]})
        assert (await next_frame(desk, "error"))["error"] == "that conversation is no longer waiting"
        await desk.send_json({"type": "accept", "conversation_id": 987654})
        assert (await next_frame(desk, "error"))["error"] == "no conversation 987654"

        # The citizen ends the chat: both sides hear it, and the chat and its contact say so.
        await waiting.send_json({"type": "close"})
        assert (await next_frame(waiting, "closed"))["by"] == "citizen"
        closed = await next_frame(desk, "closed")
        assert (closed["conversation_id"], closed["by"]) == (welcome["id"], "citizen")
        await desk.close()
        await busy.close()
        await waiting.close()
    async with ctx.db.session() as session:
        conv = await session.get(ChatConversation, welcome["id"])
        assert conv is not None and (conv.status, conv.agent_username) == ("closed", "agent1")
        events = (await session.execute(select(ContactEvent).where(ContactEvent.contact_id == conv.contact_id)
                                        .order_by(ContactEvent.id))).scalars().all()
    assert [(e.kind, e.data.get("by") or e.data.get("agent")) for e in events] == [
        ("chat_started", None), ("chat_assigned", "agent1"), ("chat_closed", "citizen")]


async def test_a_line_into_a_chat_closed_elsewhere_is_refused_and_not_stored(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens:
        ws = await citizens.ws_connect(f"{base}/chat/ws")
        await ws.send_json({"type": "hello"})
        welcome = await next_frame(ws, "welcome")
        # Closed by another process (the idle sweep of another web worker) whose bus message
        # has not arrived here yet: the database is what counts.
        async with ctx.db.transaction() as session:
            conv = await session.get(ChatConversation, welcome["id"])
            assert conv is not None
            conv.status = "closed"
        await ws.send_json({"type": "message", "id": "late", "body": "아직 계세요?"})
        assert (await next_frame(ws, "error"))["error"] == "this conversation is closed"
        await ws.close()
    async with ctx.db.session() as session:
        conv = await session.get(ChatConversation, welcome["id"])
        assert conv is not None
        lines = (await session.execute(select(Message).where(Message.contact_id == conv.contact_id))).scalars().all()
    assert lines == []


async def test_ids_with_a_trailing_line_break_are_not_taken(ctx: AppContext) -> None:
    """Python's ``$`` also matches before a final line break: the chat's token, identity and
    phone checks match the whole value, so ``<identity>\\n`` is a new browser identity (not a
    second citizen row of the same person) and ``<phone>\\n`` is not a number to text."""
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens:
        first = await citizens.ws_connect(f"{base}/chat/ws")
        await first.send_json({"type": "hello", "language": "ko"})
        welcome = await next_frame(first, "welcome")
        await first.close()
        again = await citizens.ws_connect(f"{base}/chat/ws")
        await again.send_json({"type": "hello", "token": welcome["token"] + "\n",
                               "identity": welcome["identity"] + "\n"})
        other = await next_frame(again, "welcome")
        assert other["resumed"] is False and other["id"] != welcome["id"]
        assert other["identity"] != welcome["identity"] + "\n" and "\n" not in other["identity"]
        await again.close()
    async with ctx.db.session() as session:
        identities = (await session.execute(select(Citizen.identity).where(
            Citizen.identity_kind == "chat"))).scalars().all()
    assert all("\n" not in identity for identity in identities)


def test_recording_paths_and_kamailio_names_are_matched_whole(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from ivr.config import AsteriskNode, Settings
    from ivr.kamailio.render import KamailioRenderError
    from ivr.kamailio.render import render as render_kamailio
    from ivr.recordings.store import StoreError, layout_path

    with pytest.raises(StoreError):
        layout_path("1795800000.1\n", datetime(2026, 12, 7, tzinfo=UTC))
    assert layout_path("1795800000.1", datetime(2026, 12, 7, 3, tzinfo=UTC)).endswith("/1795800000.1.wav")
    settings = Settings()
    settings.cluster.asterisk_nodes = [AsteriskNode(name="ast1", sip_host="10.0.0.11", ami_host="10.0.0.11")]
    for field, value in (("host", "kamailio.example\n"), ("realm", "dasan\n")):
        setattr(settings.cluster.kamailio, field, value)
        with pytest.raises(KamailioRenderError, match=field):
            render_kamailio(settings, tmp_path / field)
        setattr(settings.cluster.kamailio, field, {"host": "10.0.0.10", "realm": "dasan"}[field])
