"""Web chat end to end over real WebSockets: queue positions, an agent taking chats, lines
both ways, a citizen reconnecting into the same conversation, everything saved on the
contact; on SQLite and PostgreSQL, with the in-process and the Redis bus."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ivr import records
from ivr.bus import Bus
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Agent, Channel, Citizen, Contact, ContactEvent, Message
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


# -- the exact frames a citizen's browser and an agent's desk get --------------------------------

def iso(value: datetime | None) -> str | None:
    """A stored time as the frames write it: ISO 8601 with its UTC offset (SQLite gives it back
    without a zone: it is UTC)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def between(value: str | None, before: datetime, after: datetime) -> bool:
    """``value`` (a frame's ISO time) names an instant between ``before`` and ``after``."""
    return value is not None and before <= datetime.fromisoformat(value) <= after


@pytest.fixture
def korean_server_clock() -> Iterator[None]:
    """The web process's local zone is Korea's (UTC+9), as on the site's servers: every time
    the chat stores and sends must still be UTC."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "KST-9"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


async def stored_chat(ctx: AppContext, conversation_id: int) -> tuple[ChatConversation, Contact, list[Message]]:
    """The conversation, its contact and its lines as stored."""
    async with ctx.db.session() as session:
        conv = await session.get(ChatConversation, conversation_id)
        assert conv is not None
        contact = await session.get(Contact, conv.contact_id)
        assert contact is not None
        lines = (await session.execute(select(Message).where(Message.contact_id == conv.contact_id)
                                       .order_by(Message.id))).scalars().all()
    return conv, contact, list(lines)


async def test_every_frame_of_a_chat_from_hello_to_close_is_exact(ctx: AppContext, korean_server_clock: None) -> None:
    """The frames both sides get, whole: the welcome (with the queue position and the chat's
    tracking number), each line (who wrote it, the agent's name only on the agent's lines, the
    stored id and time, the client's own id back), the assignment, the resumed welcome with the
    history, the desk's hello with its active chats, the close; and what is stored (times in UTC
    although the server's clock is Korean)."""
    async with ctx.db.transaction() as session:  # the agents' telephony identities
        session.add_all([Agent(username="agent9", extension="agent1009"),
                         Agent(username="agent1", extension="agent1001")])
    start = datetime.now(UTC)
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens, aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent_http:
        citizen = await citizens.ws_connect(f"{base}/chat/ws")
        await citizen.send_json({"type": "hello", "language": "en", "name": "김민수"})
        welcome = await next_frame(citizen, "welcome")
        conv, contact, _ = await stored_chat(ctx, welcome["id"])
        async with ctx.db.session() as session:
            person = await session.get(Citizen, conv.citizen_id)
        assert person is not None and (person.identity_kind, person.display_name) == ("chat", "김민수")
        assert contact.tracking_number and contact.citizen_id == person.id and contact.channel == Channel.chat
        identity = person.identity
        summary = {"id": conv.id, "contact_id": contact.id, "citizen_id": person.id,
                   "tracking_number": contact.tracking_number, "status": "waiting", "agent": None,
                   "language": "en", "queued_at": iso(conv.queued_at), "assigned_at": None,
                   "phone_verified": False}
        assert welcome == {"type": "welcome", "token": conv.token, "identity": identity, "resumed": False,
                           "phone_verification": None, **summary, "position": 1, "messages": []}
        assert between(welcome["queued_at"], start, datetime.now(UTC))

        # Lines from the citizen: with the browser's id, and without one (the server makes one up).
        await citizen.send_json({"type": "message", "id": "c-1_A", "body": "  버스 노선 문의합니다 \n"})
        first = await next_frame(citizen, "message")
        await citizen.send_json({"type": "message", "body": "470번이요"})
        second = await next_frame(citizen, "message")
        _, _, lines = await stored_chat(ctx, conv.id)
        made_up = second["client_id"]
        assert re.fullmatch(r"[0-9a-f]{16}", made_up), made_up
        assert [(m.direction, m.sender, m.body, m.status, m.provider, m.provider_message_id) for m in lines] == [
            ("in", identity, "버스 노선 문의합니다", "received", "webchat", f"{conv.id}:c-1_A"),
            ("in", identity, "470번이요", "received", "webchat", f"{conv.id}:{made_up}")]
        assert first == {"type": "message", "conversation_id": conv.id, "id": lines[0].id, "from": "citizen",
                         "agent": None, "body": "버스 노선 문의합니다", "at": iso(lines[0].at), "client_id": "c-1_A"}
        assert second == {"type": "message", "conversation_id": conv.id, "id": lines[1].id, "from": "citizen",
                          "agent": None, "body": "470번이요", "at": iso(lines[1].at), "client_id": made_up}
        assert between(first["at"], start, datetime.now(UTC))

        # The agent's list shows the waiting chat, then their desk takes it.
        await sign_in(agent_http, base, ctx)
        async with agent_http.get(f"{base}/api/messaging/chats") as r:
            assert await r.json() == {"waiting": [{**summary, "position": 1}], "active": []}
        desk = await agent_http.ws_connect(f"{base}/api/messaging/agent/ws")
        assigned = await next_frame(desk, "assigned")
        conv, contact, _ = await stored_chat(ctx, conv.id)
        async with ctx.db.session() as session:
            agent = (await session.execute(select(Agent).where(Agent.username == "agent1"))).scalar_one()
        assert (conv.status, conv.agent_username, contact.agent_id) == ("active", "agent1", agent.id)
        assert contact.answered_at is not None and between(iso(contact.answered_at), start, datetime.now(UTC))
        assert between(iso(conv.assigned_at), start, datetime.now(UTC))
        summary = {**summary, "status": "active", "agent": "agent1", "assigned_at": iso(conv.assigned_at)}
        assert assigned == {"type": "assigned",
                            "conversation": {**summary, "position": None, "messages": [first, second]}}
        assert await next_frame(citizen, "assigned") == {"type": "assigned", "conversation_id": conv.id,
                                                         "agent": "agent1"}

        await desk.send_json({"type": "message", "conversation_id": conv.id, "id": "a1", "body": "몇 시에 타셨나요?"})
        answer = await next_frame(citizen, "message")
        _, _, lines = await stored_chat(ctx, conv.id)
        assert [(m.direction, m.sender, m.status, m.provider_message_id) for m in lines[2:]] == [
            ("out", "agent1", "sent", f"{conv.id}:a1")]
        assert answer == {"type": "message", "conversation_id": conv.id, "id": lines[2].id, "from": "agent",
                          "agent": "agent1", "body": "몇 시에 타셨나요?", "at": iso(lines[2].at), "client_id": "a1"}
        assert await next_frame(desk, "message") == answer

        # The citizen comes back with the token: the same chat, its history; the agent's desk
        # reconnects: the chat is among its active ones, with the same history.
        await citizen.close()
        citizen = await citizens.ws_connect(f"{base}/chat/ws")
        await citizen.send_json({"type": "hello", "token": conv.token, "identity": identity})
        assert await next_frame(citizen, "welcome") == {
            "type": "welcome", "token": conv.token, "identity": identity, "resumed": True,
            "phone_verification": None, **summary, "position": None, "messages": [first, second, answer]}
        await desk.close()
        desk = await agent_http.ws_connect(f"{base}/api/messaging/agent/ws")
        assert await next_frame(desk, "hello") == {
            "type": "hello", "agent": "agent1", "waiting": [],
            "active": [{**summary, "position": None, "messages": [first, second, answer]}]}

        await desk.send_json({"type": "close", "conversation_id": conv.id})
        closed = {"type": "closed", "conversation_id": conv.id, "by": "agent1"}
        assert await next_frame(citizen, "closed") == closed
        assert (await citizen.receive(timeout=20)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert await next_frame(desk, "closed") == closed
        await desk.close()
    conv, contact, _ = await stored_chat(ctx, conv.id)
    assert conv.status == "closed" and between(iso(conv.closed_at), start, datetime.now(UTC))
    async with ctx.db.session() as session:
        events = (await session.execute(select(ContactEvent).where(ContactEvent.contact_id == contact.id)
                                        .order_by(ContactEvent.id))).scalars().all()
    assert [(e.kind, e.source, e.data) for e in events] == [
        ("chat_started", "chat", {"conversation_id": conv.id}),
        ("chat_assigned", "chat", {"conversation_id": conv.id, "agent": "agent1"}),
        ("chat_closed", "chat", {"conversation_id": conv.id, "by": "agent1"})]


async def test_the_queue_is_in_order_of_arrival_and_every_waiting_side_sees_it(ctx: AppContext) -> None:
    """The waiting queue runs by the time each chat was queued, then by its id (two web
    processes may store them the other way round): the welcome's position, the positions pushed
    when the queue moves (only to the ones that moved), the agents' list and the desk's queue,
    and which chat an agent gets first all follow it."""
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens, aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent_http:
        sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
        welcomes: dict[str, dict[str, Any]] = {}
        for name in ("a", "b", "c"):
            sockets[name] = await citizens.ws_connect(f"{base}/chat/ws")
            await sockets[name].send_json({"type": "hello"})
            welcomes[name] = await next_frame(sockets[name], "welcome")
        assert [welcomes[n]["position"] for n in "abc"] == [1, 2, 3]
        ids = {n: welcomes[n]["id"] for n in "abc"}
        # b and c were queued at the same instant, a after them although its id is the lowest:
        # the queue is b, c, a.
        async with ctx.db.transaction() as session:
            rows = {n: await session.get(ChatConversation, ids[n]) for n in "abc"}
            first = rows["a"].queued_at  # type: ignore[union-attr]
            rows["b"].queued_at = rows["c"].queued_at = first - timedelta(seconds=2)  # type: ignore[union-attr]
            rows["a"].queued_at = first - timedelta(seconds=1)  # type: ignore[union-attr]
        # A fourth chat moves the queue: the three first ones are told their new places.
        sockets["d"] = await citizens.ws_connect(f"{base}/chat/ws")
        await sockets["d"].send_json({"type": "hello"})
        welcomes["d"] = await next_frame(sockets["d"], "welcome")
        ids["d"] = welcomes["d"]["id"]
        assert welcomes["d"]["position"] == 4
        assert [await next_frame(sockets[n], "queue") for n in "abc"] == [
            {"type": "queue", "position": 3}, {"type": "queue", "position": 1}, {"type": "queue", "position": 2}]
        # A fifth one comes and goes: closed chats are no longer in the queue.
        gone = await citizens.ws_connect(f"{base}/chat/ws")
        await gone.send_json({"type": "hello"})
        assert (await next_frame(gone, "welcome"))["position"] == 5
        await gone.send_json({"type": "close"})
        await next_frame(gone, "closed")
        await gone.close()
        # Reconnecting, each is told its place again.
        for name, place in (("a", 3), ("b", 1), ("c", 2)):
            again = await citizens.ws_connect(f"{base}/chat/ws")
            await again.send_json({"type": "hello", "token": welcomes[name]["token"]})
            assert (await next_frame(again, "welcome"))["position"] == place
            await again.close()

        async with ctx.db.session() as session:
            convs = {n: await session.get(ChatConversation, ids[n]) for n in "abcd"}
            tracking = {n: (await session.get(Contact, convs[n].contact_id)).tracking_number  # type: ignore[union-attr]
                        for n in "abcd"}

        def waiting(name: str, position: int) -> dict[str, Any]:
            conv = convs[name]
            assert conv is not None and tracking[name]
            return {"id": conv.id, "contact_id": conv.contact_id, "citizen_id": conv.citizen_id,
                    "tracking_number": tracking[name], "status": "waiting", "agent": None, "language": "ko",
                    "queued_at": iso(conv.queued_at), "assigned_at": None, "position": position,
                    "phone_verified": False}

        await sign_in(agent_http, base, ctx)
        async with agent_http.get(f"{base}/api/messaging/chats") as r:
            assert await r.json() == {"waiting": [waiting("b", 1), waiting("c", 2), waiting("a", 3), waiting("d", 4)],
                                      "active": []}
        # The agent's desk (room for one chat) gets the head of the queue; the others move up
        # and the desk's queue shows the rest.
        desk = await agent_http.ws_connect(f"{base}/api/messaging/agent/ws")
        assert (await next_frame(desk, "assigned"))["conversation"]["id"] == ids["b"]
        assert await next_frame(sockets["b"], "assigned") == {"type": "assigned", "conversation_id": ids["b"],
                                                              "agent": "agent1"}
        assert [await next_frame(sockets[n], "queue") for n in "cad"] == [
            {"type": "queue", "position": 1}, {"type": "queue", "position": 2}, {"type": "queue", "position": 3}]
        queue = await next_frame(desk, "queue")
        while len(queue["waiting"]) != 3:
            queue = await next_frame(desk, "queue")
        assert queue == {"type": "queue", "waiting": [waiting("c", 1), waiting("a", 2), waiting("d", 3)]}
        # A waiting citizen leaves: the ones behind move up.
        await sockets["a"].send_json({"type": "close"})
        assert await next_frame(sockets["a"], "closed") == {"type": "closed", "conversation_id": ids["a"],
                                                            "by": "citizen"}
        assert await next_frame(sockets["d"], "queue") == {"type": "queue", "position": 2}
        await desk.close()
        for ws in sockets.values():
            await ws.close()
    async with ctx.db.session() as session:
        statuses = {n: (await session.get(ChatConversation, ids[n])).status for n in "abcd"}  # type: ignore[union-attr]
    assert statuses == {"a": "closed", "b": "active", "c": "waiting", "d": "waiting"}


async def test_a_citizens_frames_that_are_not_understood_get_an_error_and_change_nothing(ctx: AppContext) -> None:
    """Each frame the chat does not understand gets its own error frame, in order; a binary frame
    and a ping get nothing; a phone number that is no number is refused; none of it stores a
    line or closes the chat."""
    async with serve(ctx) as base, aiohttp.ClientSession() as citizens:
        ws = await citizens.ws_connect(f"{base}/chat/ws")
        await ws.send_json({"type": "hello"})
        welcome = await next_frame(ws, "welcome")
        expected = {"type": "error", "error": "expected a message, close, phone, verify or ping frame"}
        await ws.send_str("{not json")
        assert await ws.receive_json(timeout=20) == {"type": "error", "error": "frames are JSON"}
        await ws.send_bytes(b'{"type": "message", "body": "binary"}')  # not a text frame: nothing
        await ws.send_json({"type": "ping"})  # nothing either
        for frame in ({"type": "message", "body": "  \n "}, {"type": "message", "body": 5}, {"type": "message"},
                      {"body": "hello?"}, ["message"], {"type": "phone", "phone": 1234},
                      {"type": "verify", "code": 123456}, {"type": "Close"}):
            await ws.send_json(frame)
            assert await ws.receive_json(timeout=20) == expected, frame
        await ws.send_json({"type": "phone", "phone": "not a number"})
        assert await ws.receive_json(timeout=20) == {"type": "phone_verification", "status": "invalid"}
        await ws.send_json({"type": "verify", "code": "123456"})  # no code was ever sent
        assert await ws.receive_json(timeout=20) == {"type": "error", "error": "wrong or expired code"}
        # Still the same open chat, with nothing stored.
        await ws.send_json({"type": "message", "id": "m1", "body": "이제 됩니다"})
        line = await ws.receive_json(timeout=20)
        assert (line["type"], line["body"], line["client_id"]) == ("message", "이제 됩니다", "m1")
        await ws.close()
    conv, _contact, lines = await stored_chat(ctx, welcome["id"])
    assert conv.status == "waiting" and [m.body for m in lines] == ["이제 됩니다"]


async def test_the_hub_fills_each_agents_room_lists_at_most_500_and_refuses_an_empty_line(ctx: AppContext) -> None:
    """The chat hub as the web handlers use it: dispatch gives each online agent chats up to
    ``sms.chat_max_per_agent`` (oldest first) and says how many it gave; the lists the agents'
    pages show stop at 500 chats; an empty line is refused and not stored."""
    from ivr.messaging.chat import ChatHub

    hub = ChatHub(ctx)
    opened = [(await hub.open(None, None, "ko", None))[0] for _ in range(3)]
    with pytest.raises(ValueError, match=r"^empty message$"):
        await hub.add_line(opened[0], "in", "citizen", " \n\t ")
    assert (await stored_chat(ctx, opened[0].id))[2] == []
    async with hub.agent_online("agent1"):
        assert await hub.dispatch() == 1  # room for one chat each (the test's setting)
        async with hub.agent_online("agent2"):
            assert await hub.dispatch() == 1
            assert await hub.dispatch() == 0
    assert [(c.id, c.agent_username) for c in await hub.active_of(None)] == [
        (opened[0].id, "agent1"), (opened[1].id, "agent2")]
    assert [c.id for c in await hub.active_of("agent2")] == [opened[1].id]
    assert [c.id for c in await hub.waiting()] == [opened[2].id]

    # 501 more waiting and 501 more active chats of agent1, queued in the reverse order of their ids.
    now = datetime.now(UTC)
    async with ctx.db.transaction() as session:
        for status in ("waiting", "active"):
            session.add_all([ChatConversation(token=f"bulk-{status}-{i:04d}-xxxxxxxx", contact_id=opened[2].contact_id,
                                              citizen_id=opened[2].citizen_id, status=status, language="ko",
                                              agent_username="agent1" if status == "active" else None,
                                              queued_at=now - timedelta(seconds=i), last_seen_at=now)
                             for i in range(501)])
    waiting = await hub.waiting_summaries()
    assert len(waiting) == 500 and [w["position"] for w in waiting] == list(range(1, 501))
    assert waiting[0]["queued_at"] == iso(now - timedelta(seconds=500))
    mine = await hub.active_of("agent1")
    assert [c.id for c in mine] == sorted(c.id for c in mine) and len(mine) == 500 and mine[0].id == opened[0].id
