"""HTTP surface of the messaging sidecar: webhooks, the citizen chat page and WebSocket, the
agents' chat/reply API, and their OpenAPI description (``setup`` registers it all)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ivr.context import AppContext
from ivr.db.models import Channel, Citizen, Contact, Media, Message
from ivr.messaging import chat, providers, webhooks
from ivr.messaging.chat import HUB_KEY, ChatHub
from ivr.messaging.media import MediaError, MediaStore, media_headers
from ivr.messaging.sns import deadline_report
from ivr.messaging.store import OUTBOUND_STREAM, InboundWriter
from ivr.web.access import audit_read, contact_access, refused
from ivr.web.auth import audit, current_user, requires
from ivr.web.bodies import read_model
from ivr.web.context import context_of
from ivr.web.errors import json_error
from ivr.web.openapi import add_paths, add_schemas
from ivr.web.params import path_id


class ReplyIn(BaseModel):
    body: str

    def clean(self) -> str:
        body = self.body.strip()
        if not body or len(body) > 2000:
            raise json_error(400, "body must be 1 to 2000 characters")
        return body


class ChatLineIn(ReplyIn):
    id: str | None = None


def _ctx(request: web.Request) -> AppContext:
    return context_of(request)


def _id(request: web.Request, name: str = "id") -> int:
    return path_id(request, name, name)


def _iso(value: datetime | None) -> str | None:
    return chat._iso(value)


# -- citizen chat ---------------------------------------------------------------------------

async def chat_page(request: web.Request) -> web.Response:
    html = resources.files("ivr.messaging").joinpath("static/chat.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html", headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                   "connect-src 'self' ws: wss:"})


# -- agents: chats ----------------------------------------------------------------------------

def _hub(request: web.Request) -> ChatHub:
    return request.app[HUB_KEY]


async def _conversation(request: web.Request) -> Any:
    conv = await _hub(request).get(_id(request))
    if conv is None:
        raise json_error(404, "no such conversation")
    return conv


@requires("agent", "supervisor")
async def list_chats(request: web.Request) -> web.Response:
    hub, user = _hub(request), current_user(request)
    assert user is not None
    mine = None if user.role in ("supervisor", "admin") else user.username
    return web.json_response({"waiting": await hub.waiting_summaries(),
                              "active": [await hub.summary(c) for c in await hub.active_of(mine)]})


@requires("agent", "supervisor")
async def get_chat(request: web.Request) -> web.Response:
    """A conversation with its lines: an agent's own, or a waiting one (to take it); supervisors
    see every one, and reading another's is audited."""
    user = current_user(request)
    assert user is not None
    conv = await _conversation(request)
    own = conv.agent_username == user.username
    if not own and conv.status != "waiting":
        if user.role == "agent":
            raise json_error(403, "that conversation is another agent's")
        await audit(_ctx(request), user.username, "record_read", f"chat:{conv.id}", ip=request.remote,
                    what="chat history", role=user.role)
    return web.json_response(await _hub(request).summary(conv, with_history=True))


@requires("agent")
async def accept_chat(request: web.Request) -> web.Response:
    user = current_user(request)
    assert user is not None
    conv = await _conversation(request)
    if not await _hub(request).assign(conv.id, user.username):
        raise json_error(409, "that conversation is no longer waiting")
    fresh = await _hub(request).get(conv.id)
    assert fresh is not None
    return web.json_response(await _hub(request).summary(fresh, with_history=True))


@requires("agent")
async def post_chat_line(request: web.Request) -> web.Response:
    user = current_user(request)
    assert user is not None
    conv = await _conversation(request)
    line = await read_model(request, ChatLineIn)
    body = line.clean()
    if conv.status != "active" or conv.agent_username != user.username:
        raise json_error(409, "that conversation is not an active chat of yours")
    stored = await _hub(request).add_line(conv, "out", user.username, body, line.id)
    if stored is None:
        return web.json_response({"duplicate": True})
    return web.json_response(stored, status=201)


@requires("agent")
async def close_chat(request: web.Request) -> web.Response:
    user = current_user(request)
    assert user is not None
    conv = await _conversation(request)
    if user.role not in ("admin", "supervisor") and conv.agent_username not in (None, user.username):
        raise json_error(409, "that conversation is another agent's")
    return web.json_response({"closed": await _hub(request).close(conv.id, user.username)})


@requires("agent")
async def agent_ws(request: web.Request) -> web.StreamResponse:
    return await chat.agent_ws(request)


# -- agents: contact threads, replies, media, SNS deadlines -------------------------------------

def _message_json(message: Message) -> dict[str, Any]:
    return {"id": message.id, "direction": message.direction, "channel": message.channel.value,
            "provider": message.provider, "sender": message.sender, "body": message.body,
            "status": message.status, "at": _iso(message.at),
            "media": [{"id": m.id, "content_type": m.content_type, "size_bytes": m.size_bytes,
                       "url": f"/api/messaging/media/{m.id}"} for m in message.media]}


@requires("agent", "supervisor", "reviewer")
async def contact_messages(request: web.Request) -> web.Response:
    contact_id = _id(request)
    ctx, user = _ctx(request), current_user(request)
    assert user is not None
    async with ctx.db.session() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None:
            raise json_error(404, "no such contact")
        access = await contact_access(ctx, session, user, contact)
        if not access.allowed:
            raise refused()
        rows = (await session.execute(select(Message).where(Message.contact_id == contact_id)
                                      .options(selectinload(Message.media)).order_by(Message.at, Message.id)
                                      .limit(5000))).scalars().all()
    await audit_read(ctx, request, user, access, "messages", f"contact:{contact_id}")
    return web.json_response({"contact_id": contact.id, "tracking_number": contact.tracking_number,
                              "channel": contact.channel.value, "status": contact.status.value,
                              "messages": [_message_json(m) for m in rows]})


@requires("agent")
async def reply(request: web.Request) -> web.Response:
    """An SMS (to a phone) or SNS reply on a contact; sent by the messaging service."""
    user = current_user(request)
    assert user is not None
    ctx = _ctx(request)
    contact_id = _id(request)
    body = (await read_model(request, ReplyIn)).clean()
    async with ctx.db.transaction() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None:
            raise json_error(404, "no such contact")
        if not (await contact_access(ctx, session, user, contact)).allowed:
            raise refused()
        citizen = await session.get(Citizen, contact.citizen_id) if contact.citizen_id else None
        if citizen is None or not (citizen.identity_kind == "phone" or citizen.identity_kind.startswith("sns:")):
            raise json_error(409, "this contact has no phone number or SNS account to reply to; "
                                  "answer web chats on the chat endpoints")
        channel = Channel.sns if citizen.identity_kind.startswith("sns:") else Channel.sms
        message = Message(contact_id=contact.id, direction="out", channel=channel, provider="",
                          sender=user.username, body=body, status="queued",
                          data={"to": citizen.identity, "kind": "reply", "by": user.username})
        session.add(message)
        await session.flush()
        job = {"to": citizen.identity, "body": body, "contact_id": contact.id, "kind": "reply",
               "message_id": message.id}
    try:
        await ctx.bus.enqueue(OUTBOUND_STREAM, job)
    except Exception:
        raise json_error(503, "the reply is saved but could not be queued for sending; try again",
                         {"message_id": job["message_id"]}) from None
    return web.json_response({"message_id": job["message_id"], "status": "queued", "channel": channel.value},
                             status=202)


@requires("agent", "supervisor", "reviewer")
async def media_file(request: web.Request) -> web.StreamResponse:
    ctx, user = _ctx(request), current_user(request)
    assert user is not None
    async with ctx.db.session() as session:
        media = await session.get(Media, _id(request))
        message = await session.get(Message, media.message_id) if media is not None else None
        contact = await session.get(Contact, message.contact_id) if message is not None else None
        access = await contact_access(ctx, session, user, contact) if contact is not None else None
    if media is None:
        raise json_error(404, "no such media")
    if access is None or not access.allowed:
        raise refused()
    await audit_read(ctx, request, user, access, "media", f"media:{media.id}")
    try:
        path = MediaStore(ctx.settings.data_dir).absolute(media.path)
    except MediaError:
        raise json_error(404, "no such media") from None
    if not path.is_file():
        raise json_error(404, "the media file is missing")
    return web.FileResponse(path, headers=media_headers(media.content_type))


@requires("agent", "supervisor")
async def outbox(request: web.Request) -> web.Response:
    """Messages the outbox provider recorded (sites without a gateway send them by hand)."""
    async with _ctx(request).db.session() as session:
        rows = (await session.execute(select(Message).where(Message.status == "outbox", Message.direction == "out")
                                      .order_by(Message.id.desc()).limit(500))).scalars().all()
    return web.json_response({"messages": [
        {"id": m.id, "contact_id": m.contact_id, "channel": m.channel.value, "to": str(m.data.get("to") or ""),
         "body": m.body, "kind": str(m.data.get("kind") or ""), "at": _iso(m.at)} for m in rows]})


def _when(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise json_error(400, f"{name} must be an ISO 8601 date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@requires("agent", "supervisor")
async def sns_deadlines(request: web.Request) -> web.Response:
    now = datetime.now(UTC)
    until = _when(request, "until", now + timedelta(seconds=1))
    since = _when(request, "since", until - timedelta(days=7))
    return web.json_response(await deadline_report(_ctx(request), since, until, now))


# -- wiring ---------------------------------------------------------------------------------------

def setup(app: web.Application, ctx: AppContext) -> None:
    providers.add_webhooks(app)
    hub = ChatHub(ctx)
    app[HUB_KEY] = hub
    app[webhooks.HTTP_KEY] = {}
    app[webhooks.INBOUND_KEY] = InboundWriter(ctx)
    r = app.router
    r.add_get("/chat", chat_page)
    r.add_get("/chat/ws", chat.citizen_ws)
    r.add_get("/api/messaging/agent/ws", agent_ws)
    r.add_get("/api/messaging/chats", list_chats)
    r.add_get(r"/api/messaging/chats/{id:\d{1,12}}", get_chat)
    r.add_post(r"/api/messaging/chats/{id:\d{1,12}}/accept", accept_chat)
    r.add_post(r"/api/messaging/chats/{id:\d{1,12}}/messages", post_chat_line)
    r.add_post(r"/api/messaging/chats/{id:\d{1,12}}/close", close_chat)
    r.add_get(r"/api/messaging/contacts/{id:\d{1,12}}/messages", contact_messages)
    r.add_post(r"/api/messaging/contacts/{id:\d{1,12}}/reply", reply)
    r.add_get(r"/api/messaging/media/{id:\d{1,12}}", media_file)
    r.add_get("/api/messaging/sns/deadlines", sns_deadlines)
    r.add_get("/api/messaging/outbox", outbox)

    async def on_startup(app: web.Application) -> None:
        app[webhooks.HTTP_KEY]["session"] = aiohttp.ClientSession()
        await hub.start()

    async def on_cleanup(app: web.Application) -> None:
        await app[webhooks.INBOUND_KEY].flush()
        await hub.stop()
        await app[webhooks.HTTP_KEY]["session"].close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    from ivr.messaging.openapi import PATHS, schemas

    add_schemas(app, schemas())
    add_paths(app, PATHS)
