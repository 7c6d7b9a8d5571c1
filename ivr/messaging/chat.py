"""Web chat: conversations, the waiting queue, and the citizen's and agents' WebSockets.

State is in the database (``chat_conversations``, lines as ``messages`` of the contact), live
traffic on the bus, so a citizen and an agent may be connected to different web processes:
- ``chat.<conversation id>``: lines, assignment and closing of one conversation;
- ``chat.queue``: "the waiting queue changed" (positions are recomputed from the database);
- ``chat.agent.<username>``: "a conversation was assigned to you".
A citizen's browser keeps the conversation's secret token; reconnecting with it resumes the
same conversation (history replayed). Conversations wait, with a position, until an agent
with free capacity (``sms.chat_max_per_agent``) is connected; assignment is a conditional
UPDATE, so two processes never give one chat to two agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ivr import records
from ivr.context import AppContext
from ivr.db.models import Agent, Channel, Contact, Message
from ivr.messaging.models import ChatConversation
from ivr.web.errors import json_error
from ivr.web.limits import RateLimiter
from ivr.web.origin import check_websocket_origin

log = logging.getLogger("dasan.messaging.chat")
PROVIDER = "webchat"
QUEUE_TOPIC = "chat.queue"
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{2,39}$")
MAX_LINE = 2000
LINES_PER_MINUTE = 30  # per citizen connection; more is flooding


def topic(conversation_id: int) -> str:
    return f"chat.{conversation_id}"


def agent_topic(username: str) -> str:
    return f"chat.agent.{username}"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def line_json(conversation_id: int, message: Message) -> dict[str, Any]:
    client_id = (message.provider_message_id or "").partition(":")[2]
    return {"type": "message", "conversation_id": conversation_id, "id": message.id,
            "from": "citizen" if message.direction == "in" else "agent",
            "agent": message.sender if message.direction == "out" else None,
            "body": message.body, "at": _iso(message.at), "client_id": client_id}


class ChatHub:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.online: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle: follow the queue topic so agents of this process get waiting chats --
    async def start(self) -> None:
        subscription = await self.ctx.bus.subscribe(QUEUE_TOPIC)
        self._task = asyncio.create_task(self._follow(subscription), name="chat-dispatch")

    async def _follow(self, subscription: Any) -> None:
        try:
            while True:
                message = await subscription.get(timeout=5.0)
                if message is not None or self.online:
                    try:
                        await self.dispatch()
                    except Exception:
                        log.exception("chat dispatch failed")
        finally:
            await subscription.close()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- conversations --
    async def open(self, token: str | None, identity: str | None, phone: str | None, language: str,
                   name: str | None) -> tuple[ChatConversation, str, bool]:
        """Resume the conversation of ``token`` if it is still open, else start a new one."""
        async with self.ctx.db.transaction() as session:
            if token and TOKEN.match(token):
                conv = (await session.execute(select(ChatConversation).where(
                    ChatConversation.token == token))).scalar_one_or_none()
                if conv is not None and conv.status != "closed":
                    return conv, identity or "", True
            if not identity or not TOKEN.match(identity):
                identity = secrets.token_urlsafe(18)
            fields = {"display_name": name[:200]} if name else {}
            if phone and PHONE.match(phone):
                citizen = await records.get_or_create_citizen(session, "phone", phone, **fields)
            else:
                citizen = await records.get_or_create_citizen(session, "chat", identity, **fields)
            contact = await records.find_open_contact(session, citizen) or await records.open_contact(
                session, Channel.chat, citizen, language=language)
            conv = ChatConversation(token=secrets.token_urlsafe(24), contact_id=contact.id,
                                    citizen_id=citizen.id, status="waiting", language=language,
                                    queued_at=datetime.now(UTC))
            session.add(conv)
            await session.flush()
            await records.record_event(session, contact.id, "chat_started", "chat",
                                       data={"conversation_id": conv.id})
        await self.ctx.bus.publish(QUEUE_TOPIC, {"type": "queue_changed"})
        return conv, identity, False

    async def get(self, conversation_id: int) -> ChatConversation | None:
        async with self.ctx.db.session() as session:
            return await session.get(ChatConversation, conversation_id)

    async def history(self, conv: ChatConversation) -> list[dict[str, Any]]:
        async with self.ctx.db.session() as session:
            rows = (await session.execute(select(Message).where(
                Message.contact_id == conv.contact_id, Message.provider == PROVIDER,
                Message.provider_message_id.like(f"{conv.id}:%")).order_by(Message.id))).scalars().all()
        return [line_json(conv.id, m) for m in rows]

    async def position(self, conv: ChatConversation) -> int | None:
        if conv.status != "waiting":
            return None
        async with self.ctx.db.session() as session:
            ahead = (await session.execute(select(func.count()).select_from(ChatConversation).where(
                ChatConversation.status == "waiting",
                or_(ChatConversation.queued_at < conv.queued_at,
                    and_(ChatConversation.queued_at == conv.queued_at, ChatConversation.id < conv.id))))).scalar_one()
        return int(ahead) + 1

    async def summary(self, conv: ChatConversation, with_history: bool = False) -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            contact = await session.get(Contact, conv.contact_id)
        out: dict[str, Any] = {
            "id": conv.id, "contact_id": conv.contact_id, "citizen_id": conv.citizen_id,
            "tracking_number": contact.tracking_number if contact else None, "status": conv.status,
            "agent": conv.agent_username, "language": conv.language, "queued_at": _iso(conv.queued_at),
            "assigned_at": _iso(conv.assigned_at), "position": await self.position(conv)}
        if with_history:
            out["messages"] = await self.history(conv)
        return out

    async def waiting(self) -> list[ChatConversation]:
        async with self.ctx.db.session() as session:
            return list((await session.execute(select(ChatConversation).where(
                ChatConversation.status == "waiting").order_by(
                ChatConversation.queued_at, ChatConversation.id).limit(500))).scalars())

    async def active_of(self, username: str | None) -> list[ChatConversation]:
        query = select(ChatConversation).where(ChatConversation.status == "active")
        if username is not None:
            query = query.where(ChatConversation.agent_username == username)
        async with self.ctx.db.session() as session:
            return list((await session.execute(query.order_by(ChatConversation.id).limit(500))).scalars())

    async def add_line(self, conv: ChatConversation, direction: str, sender: str, body: str,
                       client_id: str | None = None) -> dict[str, Any] | None:
        """Store one line (committed) and publish it; None when this client id was stored before."""
        body = body.strip()[:MAX_LINE]
        if not body:
            raise ValueError("empty message")
        if not (isinstance(client_id, str) and CLIENT_ID.match(client_id)):
            client_id = secrets.token_hex(8)
        try:
            async with self.ctx.db.transaction() as session:
                message = Message(contact_id=conv.contact_id, direction=direction, channel=Channel.chat,
                                  provider=PROVIDER, provider_message_id=f"{conv.id}:{client_id}",
                                  sender=sender, body=body, status="received" if direction == "in" else "sent")
                session.add(message)
                await session.flush()
        except IntegrityError:
            return None  # resent after a reconnect: stored once
        line = line_json(conv.id, message)
        await self.ctx.bus.publish(topic(conv.id), line)
        return line

    async def assign(self, conversation_id: int, username: str) -> bool:
        """Give a waiting conversation to ``username``; False when someone else was faster."""
        now = datetime.now(UTC)
        async with self.ctx.db.transaction() as session:
            result = await session.execute(
                update(ChatConversation)
                .where(ChatConversation.id == conversation_id, ChatConversation.status == "waiting")
                .values(status="active", agent_username=username, assigned_at=now))
            if not getattr(result, "rowcount", 0):
                return False
            conv = await session.get(ChatConversation, conversation_id)
            assert conv is not None
            contact = await session.get(Contact, conv.contact_id)
            agent = (await session.execute(select(Agent).where(Agent.username == username))).scalar_one_or_none()
            if contact is not None:
                if agent is not None and contact.agent_id is None:
                    contact.agent_id = agent.id
                if contact.answered_at is None:
                    contact.answered_at = now
            await records.record_event(session, conv.contact_id, "chat_assigned", "chat",
                                       data={"conversation_id": conversation_id, "agent": username})
        await self.ctx.bus.publish(topic(conversation_id), {"type": "assigned", "conversation_id": conversation_id,
                                                            "agent": username})
        await self.ctx.bus.publish(agent_topic(username), {"type": "assigned", "conversation_id": conversation_id})
        await self.ctx.bus.publish(QUEUE_TOPIC, {"type": "queue_changed"})
        return True

    async def close(self, conversation_id: int, by: str) -> bool:
        async with self.ctx.db.transaction() as session:
            conv = await session.get(ChatConversation, conversation_id)
            if conv is None or conv.status == "closed":
                return False
            was_waiting = conv.status == "waiting"
            conv.status, conv.closed_at = "closed", datetime.now(UTC)
            await records.record_event(session, conv.contact_id, "chat_closed", "chat",
                                       data={"conversation_id": conversation_id, "by": by})
        await self.ctx.bus.publish(topic(conversation_id), {"type": "closed", "conversation_id": conversation_id,
                                                            "by": by})
        if was_waiting or conv.agent_username:
            await self.ctx.bus.publish(QUEUE_TOPIC, {"type": "queue_changed"})
        return True

    async def dispatch(self) -> int:
        """Assign the oldest waiting chats to agents of this process with free capacity."""
        limit = self.ctx.settings.sms.chat_max_per_agent
        assigned = 0
        async with self._lock:
            for username in list(self.online):
                free = limit - len(await self.active_of(username))
                while free > 0:
                    waiting = await self.waiting()
                    if not waiting:
                        return assigned
                    if await self.assign(waiting[0].id, username):
                        free -= 1
                        assigned += 1
        return assigned

    @contextlib.asynccontextmanager
    async def agent_online(self, username: str) -> AsyncIterator[None]:
        self.online[username] = self.online.get(username, 0) + 1
        try:
            yield
        finally:
            self.online[username] -= 1
            if self.online[username] <= 0:
                del self.online[username]


HUB_KEY = web.AppKey("chat_hub", ChatHub)


def _hub(request: web.Request) -> ChatHub:
    return request.app[HUB_KEY]


def _check_origin(request: web.Request) -> None:
    """A browser WebSocket from another site must not ride on a signed-in agent's cookie (nor
    run a citizen's chat from its page): scheme, host and port must be this site's."""
    check_websocket_origin(request, _hub(request).ctx.settings)


async def _prepare(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=16 * 1024)
    if not ws.can_prepare(request).ok:
        raise json_error(400, "this endpoint expects a WebSocket upgrade")
    await ws.prepare(request)
    return ws


async def _forward(subscription: Any, send: Any) -> None:
    while True:
        message = await subscription.get(timeout=30.0)
        if message is not None:
            await send(message)


async def citizen_ws(request: web.Request) -> web.WebSocketResponse:
    """The citizen's chat. First frame: ``{"type": "hello", "token"?, "identity"?, "language"?,
    "name"?, "phone"?}``; then ``{"type": "message", "id", "body"}`` and ``{"type": "close"}``."""
    _check_origin(request)
    hub = _hub(request)
    ws = await _prepare(request)
    try:
        hello = await ws.receive_json(timeout=30.0)
    except (TimeoutError, TypeError, ValueError):
        await ws.send_json({"type": "error", "error": "first frame must be a JSON hello"})
        await ws.close()
        return ws
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        await ws.send_json({"type": "error", "error": "first frame must be {\"type\": \"hello\"}"})
        await ws.close()
        return ws
    language = "en" if hello.get("language") == "en" else "ko"

    def text(key: str) -> str | None:
        value = hello.get(key)
        return value if isinstance(value, str) else None

    conv, identity, resumed = await hub.open(text("token"), text("identity"), text("phone"), language, text("name"))
    with contextlib.suppress(ConnectionResetError):  # the browser went away mid-write: nothing to do
        await _citizen_session(hub, ws, conv, identity, resumed)
    return ws


async def _citizen_session(hub: ChatHub, ws: web.WebSocketResponse, conv: ChatConversation, identity: str,
                           resumed: bool) -> None:
    bus = hub.ctx.bus
    lines = await bus.subscribe(topic(conv.id))
    queue = await bus.subscribe(QUEUE_TOPIC)
    state = {"status": conv.status}

    async def on_line(message: dict[str, Any]) -> None:
        if message.get("type") in ("assigned", "closed"):
            state["status"] = "active" if message["type"] == "assigned" else "closed"
        await ws.send_json(message)
        if message.get("type") == "closed":
            await ws.close()

    async def on_queue(_message: dict[str, Any]) -> None:
        if state["status"] == "waiting":
            fresh = await hub.get(conv.id)
            if fresh is not None and fresh.status == "waiting":
                await ws.send_json({"type": "queue", "position": await hub.position(fresh)})

    flood = RateLimiter(LINES_PER_MINUTE)
    tasks = [asyncio.create_task(_forward(lines, on_line)), asyncio.create_task(_forward(queue, on_queue))]
    try:
        welcome = await hub.summary(conv, with_history=True)
        await ws.send_json({"type": "welcome", "token": conv.token, "identity": identity, "resumed": resumed,
                            **welcome})
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            try:
                data = frame.json()
            except ValueError:
                await ws.send_json({"type": "error", "error": "frames are JSON"})
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "message" and isinstance(data.get("body"), str) and data["body"].strip():
                if flood.take(("line", "")) > 0:
                    await ws.send_json({"type": "error", "error": "too many messages; slow down"})
                    continue
                current = await hub.get(conv.id)
                if current is None or current.status == "closed":
                    await ws.send_json({"type": "error", "error": "this conversation is closed"})
                    continue
                await hub.add_line(current, "in", identity or "citizen", data["body"], data.get("id"))
            elif kind == "close":
                await hub.close(conv.id, "citizen")
            elif kind != "ping":
                await ws.send_json({"type": "error", "error": "expected a message, close or ping frame"})
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await lines.close()
        await queue.close()


async def agent_ws(request: web.Request) -> web.WebSocketResponse:
    """An agent's live chat desk (sign-in required, role agent). Frames from the agent:
    ``{"type": "message", "conversation_id", "body", "id"?}``, ``{"type": "accept",
    "conversation_id"}``, ``{"type": "close", "conversation_id"}``. Frames to the agent:
    ``hello`` (active chats with history, waiting queue), ``queue``, ``assigned`` (with
    history), ``message``, ``closed``, ``error``."""
    from ivr.web.auth import current_user

    _check_origin(request)
    user = current_user(request)
    assert user is not None
    hub = _hub(request)
    ws = await _prepare(request)
    with contextlib.suppress(ConnectionResetError):
        await _agent_session(hub, ws, user.username)
    return ws


async def _agent_session(hub: ChatHub, ws: web.WebSocketResponse, username: str) -> None:
    bus = hub.ctx.bus
    followed: dict[int, tuple[Any, asyncio.Task[None]]] = {}

    async def send(message: dict[str, Any]) -> None:
        if not ws.closed:
            await ws.send_json(message)

    async def follow(conversation_id: int) -> None:
        if conversation_id not in followed:
            subscription = await bus.subscribe(topic(conversation_id))
            followed[conversation_id] = (subscription, asyncio.create_task(_forward(subscription, send)))

    async def queue_frame() -> dict[str, Any]:
        return {"type": "queue", "waiting": [await hub.summary(c) for c in await hub.waiting()]}

    async def on_assigned(message: dict[str, Any]) -> None:
        conv = await hub.get(int(message["conversation_id"]))
        if conv is not None and conv.agent_username == username:
            await follow(conv.id)
            await send({"type": "assigned", "conversation": await hub.summary(conv, with_history=True)})

    async def on_queue(_message: dict[str, Any]) -> None:
        await send(await queue_frame())

    mine = await bus.subscribe(agent_topic(username))
    queue = await bus.subscribe(QUEUE_TOPIC)
    tasks = [asyncio.create_task(_forward(mine, on_assigned)), asyncio.create_task(_forward(queue, on_queue))]
    try:
        async with hub.agent_online(username):
            active = await hub.active_of(username)
            for conv in active:
                await follow(conv.id)
            await send({"type": "hello", "agent": username,
                        "active": [await hub.summary(c, with_history=True) for c in active],
                        **{k: v for k, v in (await queue_frame()).items() if k != "type"}})
            await hub.dispatch()
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    data = frame.json()
                    kind = data.get("type")
                    conversation_id = int(data.get("conversation_id") or 0)
                except (ValueError, TypeError, AttributeError):
                    await send({"type": "error", "error": "frames are JSON objects with a conversation_id"})
                    continue
                target = await hub.get(conversation_id) if 0 < conversation_id < 2**31 else None
                if target is None:
                    await send({"type": "error", "error": f"no conversation {conversation_id}"})
                elif kind == "accept":
                    if not await hub.assign(target.id, username):
                        await send({"type": "error", "error": "that conversation is no longer waiting"})
                elif target.agent_username != username or target.status != "active":
                    await send({"type": "error", "error": "that conversation is not yours"})
                elif kind == "message" and isinstance(data.get("body"), str) and data["body"].strip():
                    await hub.add_line(target, "out", username, data["body"], data.get("id"))
                elif kind == "close":
                    await hub.close(target.id, username)
                else:
                    await send({"type": "error", "error": "expected message, accept or close"})
    finally:
        for task in tasks + [t for _s, t in followed.values()]:
            task.cancel()
        for task in tasks + [t for _s, t in followed.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subscription in [mine, queue] + [s for s, _t in followed.values()]:
            await subscription.close()
