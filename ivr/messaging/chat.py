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

Abuse limits: every chat is its own contact; a phone number given in the hello is only a
claim until the citizen types the one-time code sent to it by SMS (then the contact becomes
that citizen's). Lines are limited per conversation (not per connection: reconnecting does
not reset it). A chat whose citizen is neither connected nor writing for
``sms.chat_idle_seconds`` is closed. Queue changes are coalesced: one process computes the
positions once per burst of changes and pushes each waiting citizen only a changed position.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import Row, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ivr import records
from ivr.context import AppContext
from ivr.contracts import Topic, agent_chat_topic, chat_topic
from ivr.db.models import Agent, Channel, Contact, Message
from ivr.messaging.models import ChatCodeSend, ChatConversation
from ivr.tasks import cancel_and_wait
from ivr.web.errors import json_error
from ivr.web.limits import RateLimiter
from ivr.web.origin import check_websocket_origin

log = logging.getLogger("dasan.messaging.chat")
PROVIDER = "webchat"
QUEUE_TOPIC = Topic.CHAT_QUEUE
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{2,39}$")
MAX_LINE = 2000
LINES_PER_MINUTE = 30  # per conversation, whatever the connections; more is flooding
CODE_ATTEMPTS = 5  # wrong one-time codes before the code is void
COALESCE_SECONDS = 0.02  # queue changes arriving this close together are handled as one
PositionSink = Callable[[int], Awaitable[None]]
QueueSink = Callable[[list[dict[str, Any]]], Awaitable[None]]


topic, agent_topic = chat_topic, agent_chat_topic


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


def _code_hash(token: str, code: str) -> str:
    return hashlib.sha256(f"{token}:{code}".encode()).hexdigest()


class ChatHub:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.online: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Citizens and agents connected to this process, fed by the one queue follower.
        self.citizens: dict[int, int] = {}  # conversation id -> open connections
        self.waiters: dict[int, set[PositionSink]] = {}
        self.queue_sinks: set[QueueSink] = set()
        self._positions: dict[int, int] = {}  # last position pushed per conversation
        self.flood = RateLimiter(LINES_PER_MINUTE)
        idle = ctx.settings.sms.chat_idle_seconds
        self.tick = min(5.0, idle / 3)
        self._last_touch = 0.0

    # -- lifecycle: follow the queue topic so agents of this process get waiting chats --
    async def start(self) -> None:
        subscription = await self.ctx.bus.subscribe(QUEUE_TOPIC)
        self._task = asyncio.create_task(self._follow(subscription), name="chat-dispatch")

    async def _follow(self, subscription: Any) -> None:
        try:
            while True:
                changed = await subscription.get(timeout=self.tick) is not None
                if changed:  # a burst of changes (200 joins) is handled once
                    for _ in range(10_000):
                        if await subscription.get(timeout=COALESCE_SECONDS) is None:
                            break
                try:
                    if changed or self.online:
                        await self.dispatch()
                    await self.sweep_idle()
                    if changed:
                        await self.push_queue()
                except Exception:
                    log.exception("chat dispatch failed")
        finally:
            await subscription.close()

    async def _waiting_rows(self, limit: int) -> Sequence[Row[ChatConversation, str | None]]:
        """The first ``limit`` waiting chats in queue order, each with its contact's tracking number."""
        async with self.ctx.db.session() as session:
            return (await session.execute(
                select(ChatConversation, Contact.tracking_number)
                .outerjoin(Contact, Contact.id == ChatConversation.contact_id)
                .where(ChatConversation.status == "waiting")
                .order_by(ChatConversation.queued_at, ChatConversation.id).limit(limit))).all()

    async def push_queue(self) -> None:
        """One query for the waiting queue; each local waiter gets its position if it changed,
        each local agent desk the waiting list."""
        if not self.waiters and not self.queue_sinks:
            return
        rows = await self._waiting_rows(5000)
        positions = {conv.id: index for index, (conv, _t) in enumerate(rows, start=1)}
        for conv_id, sinks in list(self.waiters.items()):
            position = positions.get(conv_id)
            if position is None or self._positions.get(conv_id) == position:
                continue
            self._positions[conv_id] = position
            for sink in list(sinks):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await sink(position)
        if self.queue_sinks:
            waiting = [self._summary_of(conv, tracking, positions[conv.id]) for conv, tracking in rows[:500]]
            for queue_sink in list(self.queue_sinks):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await queue_sink(waiting)

    async def sweep_idle(self) -> int:
        """Keep local citizens' chats alive, close the ones nobody has been in for too long."""
        now = datetime.now(UTC)
        idle = self.ctx.settings.sms.chat_idle_seconds
        if self.citizens and time.monotonic() - self._last_touch >= self.tick:
            self._last_touch = time.monotonic()
            async with self.ctx.db.transaction() as session:
                await session.execute(update(ChatConversation).where(
                    ChatConversation.id.in_(list(self.citizens))).values(last_seen_at=now))
        cutoff = now - timedelta(seconds=idle)
        async with self.ctx.db.session() as session:
            stale = list((await session.execute(select(ChatConversation.id).where(
                ChatConversation.status != "closed",
                or_(ChatConversation.last_seen_at < cutoff,
                    and_(ChatConversation.last_seen_at.is_(None), ChatConversation.queued_at < cutoff)))
                .limit(500))).scalars())
        closed = 0
        for conv_id in stale:
            if conv_id not in self.citizens and await self.close(conv_id, "idle"):
                closed += 1
        return closed

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- conversations --
    async def open(self, token: str | None, identity: str | None, language: str,
                   name: str | None) -> tuple[ChatConversation, str, bool]:
        """Resume the conversation of ``token`` if it is still open, else start a new one (its
        own contact, of the browser's own chat identity: never someone else's by a claim)."""
        now = datetime.now(UTC)
        async with self.ctx.db.transaction() as session:
            if token and TOKEN.fullmatch(token):
                conv = (await session.execute(select(ChatConversation).where(
                    ChatConversation.token == token))).scalar_one_or_none()
                if conv is not None and conv.status != "closed":
                    conv.last_seen_at = now
                    return conv, identity or "", True
            if not identity or not TOKEN.fullmatch(identity):
                identity = secrets.token_urlsafe(18)
            fields = {"display_name": name[:200]} if name else {}
            citizen = await records.get_or_create_citizen(session, "chat", identity, **fields)
            contact = await records.find_open_contact(session, citizen) or await records.open_contact(
                session, Channel.chat, citizen, language=language)
            conv = ChatConversation(token=secrets.token_urlsafe(24), contact_id=contact.id,
                                    citizen_id=citizen.id, status="waiting", language=language,
                                    queued_at=now, last_seen_at=now)
            session.add(conv)
            await session.flush()
            await records.record_event(session, contact.id, "chat_started", "chat",
                                       data={"conversation_id": conv.id})
        await self.ctx.bus.publish(QUEUE_TOPIC, {"type": "queue_changed"})
        return conv, identity, False

    async def send_code(self, conv: ChatConversation, phone: str) -> str:
        """Text a one-time code to ``phone`` for this chat; 'sent', 'invalid' or 'limited'."""
        if not PHONE.fullmatch(phone):
            return "invalid"
        number = records.normalize_phone(phone)
        settings = self.ctx.settings.sms
        now = datetime.now(UTC)
        ttl = timedelta(minutes=settings.chat_code_minutes)
        code = f"{secrets.randbelow(10**6):06d}"
        since = now - timedelta(hours=1)
        async with self.ctx.db.transaction() as session:
            # Codes texted to this number in the last hour, from any chat (this one asking again
            # included): the number's owner gets at most chat_codes_per_phone_hour texts.
            await session.execute(delete(ChatCodeSend).where(ChatCodeSend.sent_at < since))
            recent = (await session.execute(select(func.count()).select_from(ChatCodeSend).where(
                ChatCodeSend.phone == number, ChatCodeSend.sent_at >= since))).scalar_one()
            if recent >= settings.chat_codes_per_phone_hour:
                return "limited"
            row = await session.get(ChatConversation, conv.id)
            if row is None or row.status == "closed":
                return "invalid"
            row.claimed_phone, row.phone_code = number, _code_hash(row.token, code)
            row.phone_code_expires, row.phone_attempts = now + ttl, 0
            session.add(ChatCodeSend(phone=number, conversation_id=row.id, sent_at=now))
            await records.record_event(session, row.contact_id, "chat_phone_code_sent", "chat",
                                       data={"conversation_id": row.id})
        from ivr.messaging.store import OUTBOUND_STREAM

        body = (f"[{self.ctx.settings.site_name}] 채팅 본인 확인 번호 {code} "
                f"(chat verification code; valid {settings.chat_code_minutes:g} min)")
        await self.ctx.bus.enqueue(OUTBOUND_STREAM, {"to": number, "body": body, "contact_id": conv.contact_id,
                                                     "kind": "chat_code",
                                                     "idempotency_key": f"chat_code:{conv.id}:{now.timestamp()}"})
        return "sent"

    async def verify_code(self, conv: ChatConversation, code: str) -> str | None:
        """The proven phone number when ``code`` is right (the chat's contact becomes that
        citizen's), else None. A code expires, and after ``CODE_ATTEMPTS`` wrong ones is void."""
        now = datetime.now(UTC)
        async with self.ctx.db.transaction() as session:
            row = await session.get(ChatConversation, conv.id)
            if (row is None or row.phone_code is None or row.claimed_phone is None
                    or row.phone_code_expires is None or row.phone_attempts >= CODE_ATTEMPTS):
                return None
            expires = row.phone_code_expires if row.phone_code_expires.tzinfo else \
                row.phone_code_expires.replace(tzinfo=UTC)
            if expires < now:
                return None
            if not hmac.compare_digest(row.phone_code, _code_hash(row.token, code.strip()[:12])):
                row.phone_attempts += 1
                return None
            citizen = await records.get_or_create_citizen(session, "phone", row.claimed_phone)
            contact = await session.get(Contact, row.contact_id)
            if contact is not None:
                contact.citizen_id = citizen.id
            row.citizen_id, row.phone_code, row.phone_verified_at = citizen.id, None, now
            await records.record_event(session, row.contact_id, "chat_phone_verified", "chat",
                                       data={"conversation_id": row.id})
            return row.claimed_phone

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

    @staticmethod
    def _summary_of(conv: ChatConversation, tracking: str | None, position: int | None) -> dict[str, Any]:
        return {"id": conv.id, "contact_id": conv.contact_id, "citizen_id": conv.citizen_id,
                "tracking_number": tracking, "status": conv.status, "agent": conv.agent_username,
                "language": conv.language, "queued_at": _iso(conv.queued_at),
                "assigned_at": _iso(conv.assigned_at), "position": position,
                "phone_verified": conv.phone_verified_at is not None}

    async def summary(self, conv: ChatConversation, with_history: bool = False) -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            contact = await session.get(Contact, conv.contact_id)
        out = self._summary_of(conv, contact.tracking_number if contact else None, await self.position(conv))
        if with_history:
            out["messages"] = await self.history(conv)
        return out

    async def waiting_summaries(self) -> list[dict[str, Any]]:
        """The waiting queue as the agents' desk shows it, in one query."""
        rows = await self._waiting_rows(500)
        return [self._summary_of(conv, tracking, index) for index, (conv, tracking) in enumerate(rows, start=1)]

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
        if not (isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id)):
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

    conv, identity, resumed = await hub.open(text("token"), text("identity"), language, text("name"))
    # A phone number in the hello is a claim, not an identity: a code goes to it by SMS and the
    # chat stays its own contact until the citizen types that code ({"type": "verify"}).
    phone = text("phone")
    verification = await hub.send_code(conv, phone) if phone and conv.phone_verified_at is None else None
    with contextlib.suppress(ConnectionResetError):  # the browser went away mid-write: nothing to do
        await _citizen_session(hub, ws, conv, identity, resumed, verification)
    return ws


async def _citizen_session(hub: ChatHub, ws: web.WebSocketResponse, conv: ChatConversation, identity: str,
                           resumed: bool, verification: str | None) -> None:
    bus = hub.ctx.bus
    lines = await bus.subscribe(topic(conv.id))

    async def on_line(message: dict[str, Any]) -> None:
        if message.get("type") in ("assigned", "closed"):
            hub.waiters.get(conv.id, set()).discard(on_position)
        await ws.send_json(message)
        if message.get("type") == "closed":
            await ws.close()

    async def on_position(position: int) -> None:
        if not ws.closed:
            await ws.send_json({"type": "queue", "position": position})

    hub.citizens[conv.id] = hub.citizens.get(conv.id, 0) + 1
    tasks = [asyncio.create_task(_forward(lines, on_line))]
    try:
        welcome = await hub.summary(conv, with_history=True)
        if welcome["position"] is not None:  # later positions are pushed when they change
            hub._positions.setdefault(conv.id, welcome["position"])
            hub.waiters.setdefault(conv.id, set()).add(on_position)
        await ws.send_json({"type": "welcome", "token": conv.token, "identity": identity, "resumed": resumed,
                            "phone_verification": verification, **welcome})
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
                if hub.flood.take(("chat", str(conv.id))) > 0:
                    await ws.send_json({"type": "error", "error": "too many messages; slow down"})
                    continue
                current = await hub.get(conv.id)
                if current is None or current.status == "closed":
                    await ws.send_json({"type": "error", "error": "this conversation is closed"})
                    continue
                await hub.add_line(current, "in", identity or "citizen", data["body"], data.get("id"))
            elif kind == "close":
                await hub.close(conv.id, "citizen")
            elif kind == "phone" and isinstance(data.get("phone"), str):
                await ws.send_json({"type": "phone_verification", "status": await hub.send_code(conv, data["phone"])})
            elif kind == "verify" and isinstance(data.get("code"), str):
                if hub.flood.take(("verify", str(conv.id))) > 0:
                    await ws.send_json({"type": "error", "error": "too many attempts; slow down"})
                    continue
                proven = await hub.verify_code(conv, data["code"])
                if proven is None:
                    await ws.send_json({"type": "error", "error": "wrong or expired code"})
                else:
                    await ws.send_json({"type": "verified", "phone": proven})
            elif kind != "ping":
                await ws.send_json({"type": "error", "error": "expected a message, close, phone, verify or ping frame"})
    finally:
        await cancel_and_wait(tasks)
        await lines.close()
        sinks = hub.waiters.get(conv.id)
        if sinks is not None:
            sinks.discard(on_position)
            if not sinks:
                del hub.waiters[conv.id]
                hub._positions.pop(conv.id, None)
        hub.citizens[conv.id] -= 1
        if hub.citizens[conv.id] <= 0:
            del hub.citizens[conv.id]
            with contextlib.suppress(Exception):  # the idle clock starts when the citizen leaves
                async with hub.ctx.db.transaction() as session:
                    await session.execute(update(ChatConversation).where(ChatConversation.id == conv.id)
                                          .values(last_seen_at=datetime.now(UTC)))


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
        return {"type": "queue", "waiting": await hub.waiting_summaries()}

    async def on_assigned(message: dict[str, Any]) -> None:
        conv = await hub.get(int(message["conversation_id"]))
        if conv is not None and conv.agent_username == username:
            await follow(conv.id)
            await send({"type": "assigned", "conversation": await hub.summary(conv, with_history=True)})

    async def on_queue(waiting: list[dict[str, Any]]) -> None:
        await send({"type": "queue", "waiting": waiting})

    mine = await bus.subscribe(agent_topic(username))
    tasks = [asyncio.create_task(_forward(mine, on_assigned))]
    hub.queue_sinks.add(on_queue)  # the hub's one queue follower feeds every desk of this process
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
        await cancel_and_wait(tasks + [t for _s, t in followed.values()])
        hub.queue_sinks.discard(on_queue)
        for subscription in [mine] + [s for s, _t in followed.values()]:
            await subscription.close()
