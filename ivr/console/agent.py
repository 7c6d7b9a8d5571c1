"""Agent console API: queue state (through the AMI bridge), screen-pop, the counselling record,
the SMS/SNS inbox (replies and web chats go through /api/messaging/...) and a knowledge search over earlier records and transcripts.

Agent state changes are jobs on ``agent.commands`` (the AMI bridge runs them against Asterisk);
the browser learns the result from ``live.agents`` and calls from ``agent.screenpop`` through
the agent WebSocket, both filtered to the signed-in agent. Live partial transcripts
(``transcript.partial``, ivr.speech.audiosocket) go only to the agent whose connected screen-pop
named that AudioSocket stream (``live_stream``); they are shown, never stored.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ivr.console.http import audit_request, int_match, iso, username
from ivr.console.live_socket import hold_until_closed, open_live_socket
from ivr.console.phone_status import phone_status
from ivr.console.render import ctx_of, render
from ivr.contracts import Stream, Topic, contact_updated
from ivr.db.models import Category, Channel, Citizen, Contact, Message
from ivr.records import earlier_contacts, record_event
from ivr.search import SearchError, search_text
from ivr.web.access import contact_access, refused, visible_filter
from ivr.web.auth import current_user, requires
from ivr.web.bodies import Body, one_of, read_model
from ivr.web.errors import json_error

ACTIONS = ("login", "logout", "pause", "unpause")
RESOLUTIONS = ("answered", "transferred", "callback", "unresolved")
# Web chats have their own queue and endpoints (/api/messaging/chats); the inbox is the rest.
TEXT_CHANNELS = (Channel.sms, Channel.mms, Channel.sns)
MAX_NOTES = 20_000
EARLY_PER_STREAM, EARLY_STREAMS = 20, 200  # partials held until a screen-pop names their stream
LIVE_PARTIALS = "transcript.partial"  # ivr.speech.audiosocket.TOPIC (not imported: it loads vosk code)


@requires("agent", "supervisor")
async def agent_page(request: web.Request) -> web.Response:
    async with ctx_of(request).db.session() as session:
        categories = list((await session.execute(
            select(Category).where(Category.active.is_(True)).order_by(Category.code))).scalars())
    return render(request, "agent.html", categories=categories, resolutions=RESOLUTIONS)


@requires("agent", "supervisor")
async def get_state(request: web.Request) -> web.Response:
    """GET /api/console/agent/state: what the AMI bridge last recorded for me."""
    from ivr.ami.models import AgentState

    async with ctx_of(request).db.session() as session:
        row = await session.get(AgentState, username(request))
    if row is None:
        return web.json_response({"username": username(request), "state": "logged_out", "reason": None,
                                  "queues": []})
    return web.json_response({"username": row.username, "state": row.state, "reason": row.reason,
                              "queues": sorted(row.queues or {}), "since": iso(row.since)})


class StateIn(Body):
    action: Annotated[str, one_of(ACTIONS)]
    reason: str = ""  # a pause's reason (the first 200 characters)


class RecordIn(Body):
    category: str | None = None  # a category code (checked against the table)
    notes: str = Field("", max_length=MAX_NOTES)
    resolution: str | None = None

    @field_validator("resolution")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value and value not in RESOLUTIONS:
            raise ValueError(f"one of {', '.join(RESOLUTIONS)}")
        return value or None


@requires("agent", "supervisor")
async def post_state(request: web.Request) -> web.Response:
    """POST /api/console/agent/state {"action": login|logout|pause|unpause, "reason"?}."""
    from ivr.ami.wire import UnsafeAmiValue, ami_value

    body = await read_model(request, StateIn)
    action = body.action
    command: dict[str, Any] = {"action": action, "username": username(request)}
    if action == "pause":
        reason = body.reason.strip()[:200]
        try:  # the reason travels in an AMI header: a line break there would be a new action
            ami_value(reason, "reason")
        except UnsafeAmiValue as exc:
            raise json_error(400, str(exc)) from None
        if reason:
            command["reason"] = reason
    problem = phone_status(request).problem()
    if problem:  # said at once instead of a request that waits for a bridge that cannot run it
        await audit_request(request, "agent_action_refused", f"agent:{command['username']}", requested=action,
                            why=problem)
        raise json_error(503, problem)
    job_id = await ctx_of(request).bus.enqueue(Stream.AGENT_COMMANDS, command)
    await audit_request(request, f"agent_{action}", f"agent:{command['username']}", reason=command.get("reason"))
    return web.json_response({"queued": True, "job_id": job_id, "command": command}, status=202)


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id, "channel": str(contact.channel), "status": str(contact.status),
        "started_at": iso(contact.started_at), "language": contact.language, "queue": contact.queue,
        "topic": contact.topic, "tracking_number": contact.tracking_number,
        "category_id": contact.category_id,
        "category": ({"code": contact.category.code, "ko": contact.category.name_ko, "en": contact.category.name_en}
                     if contact.category else None),
        "notes": contact.notes, "resolution": contact.resolution, "satisfaction": contact.satisfaction,
        "outcome": contact.outcome,
    }


@requires("agent", "supervisor")
async def get_contact(request: web.Request) -> web.Response:
    """GET /api/console/contacts/{id}: the contact, its citizen and their earlier inquiries."""
    contact_id = int_match(request)
    ctx, user = ctx_of(request), current_user(request)
    assert user is not None
    async with ctx.db.session() as session:
        contact = (await session.execute(select(Contact).options(
            selectinload(Contact.category), selectinload(Contact.citizen)).where(Contact.id == contact_id)
        )).scalar_one_or_none()
        if contact is None:
            raise json_error(404, "no such contact / 문의가 없습니다")
        access = await contact_access(ctx, session, user, contact)
        if not access.allowed:
            await audit_request(request, "record_refused", f"contact:{contact_id}")
            raise refused()
        earlier: list[Contact] = []
        if contact.citizen_id is not None:
            ids = [c.id for c in await earlier_contacts(session, contact.citizen_id, limit=20) if c.id != contact.id]
            if ids:
                earlier = list((await session.execute(select(Contact).options(selectinload(Contact.category))
                                                      .where(Contact.id.in_(ids))
                                                      .order_by(Contact.started_at.desc(), Contact.id.desc()))).scalars())
        citizen: Citizen | None = contact.citizen
    await audit_request(request, "contact_viewed", f"contact:{contact_id}", own=access.own)
    return web.json_response({
        "contact": contact_json(contact),
        "citizen": ({"id": citizen.id, "identity": citizen.identity, "kind": citizen.identity_kind,
                     "name": citizen.display_name} if citizen else None),
        "earlier": [contact_json(c) for c in earlier],
    })


@requires("agent", "supervisor")
async def save_record(request: web.Request) -> web.Response:
    """POST /api/console/contacts/{id}/record {"category", "notes", "resolution"}: the agent's record."""
    contact_id = int_match(request)
    body = await read_model(request, RecordIn)
    notes, resolution, category_code = body.notes, body.resolution, body.category or None
    user = current_user(request)
    assert user is not None
    ctx = ctx_of(request)
    async with ctx.db.transaction() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None:
            raise json_error(404, "no such contact / 문의가 없습니다")
        access = await contact_access(ctx, session, user, contact)
        if not access.allowed or (user.role == "agent" and not access.own and contact.agent_id is not None):
            # A record is written by the agent who has the contact; a queue's other agents read it.
            raise json_error(403, "this contact belongs to another agent / 다른 상담원의 문의입니다")
        category_id = None
        if category_code is not None:
            category_id = (await session.execute(
                select(Category.id).where(Category.code == str(category_code)))).scalar_one_or_none()
            if category_id is None:
                raise json_error(400, f"category: unknown code {category_code!r}")
        contact.notes, contact.resolution, contact.category_id = notes, resolution, category_id
        contact.updated_at = datetime.now(UTC)
        await record_event(session, contact_id, "record_saved", "web",
                           data={"by": user.username, "category": category_code, "resolution": resolution})
    await ctx.bus.publish(Topic.CONTACT_UPDATED, contact_updated(contact_id, ["notes", "resolution", "category_id"]))
    await audit_request(request, "record_saved", f"contact:{contact_id}")
    return web.json_response({"saved": True, "contact_id": contact_id})


@requires("agent", "supervisor")
async def inbox(request: web.Request) -> web.Response:
    """GET /api/console/inbox: open SMS/MMS/SNS contacts, newest message first, with their lines."""
    ctx, user = ctx_of(request), current_user(request)
    assert user is not None
    async with ctx.db.session() as session:
        query = select(Contact).options(selectinload(Contact.citizen), selectinload(Contact.category)).where(
            Contact.channel.in_(TEXT_CHANNELS), Contact.status == "open")
        visible = await visible_filter(ctx, session, user)  # an agent: the shared inbox and their own
        if visible is not None:
            query = query.where(visible)
        contacts = list((await session.execute(
            query.order_by(Contact.updated_at.desc(), Contact.id.desc()).limit(50))).scalars())
        messages: dict[int, list[Message]] = {c.id: [] for c in contacts}
        if contacts:
            for m in (await session.execute(select(Message).where(Message.contact_id.in_(list(messages)))
                                            .order_by(Message.at, Message.id))).scalars():
                messages[m.contact_id].append(m)
    return web.json_response({"items": [{
        **contact_json(c),
        "from": c.citizen.identity if c.citizen else None,
        "messages": [{"id": m.id, "direction": m.direction, "body": m.body, "at": iso(m.at), "status": m.status}
                     for m in messages[c.id][-20:]],
    } for c in contacts]})


@requires("agent", "supervisor")
async def knowledge(request: web.Request) -> web.Response:
    """GET /api/console/kb?q=: earlier records and transcript lines that contain every word."""
    query = request.query.get("q", "").strip()
    if not query:
        raise json_error(400, "q: give one or more words / 검색어를 입력하세요")
    async with ctx_of(request).db.session() as session:
        try:
            hits = await search_text(session, query, limit=30)
        except SearchError as exc:
            raise json_error(exc.status, str(exc)) from None
        ids = {h.contact_id for h in hits if h.contact_id}
        contacts = {c.id: c for c in (await session.execute(
            select(Contact).options(selectinload(Contact.category)).where(Contact.id.in_(ids)))).scalars()} if ids else {}
    items = []
    for h in hits:
        c = contacts.get(h.contact_id)
        items.append({"kind": h.kind, "text": h.text[:500], "start": h.start, "contact": contact_json(c) if c else None})
    return web.json_response({"q": query, "items": items})


@requires("agent", "supervisor")
async def agent_socket(request: web.Request) -> web.StreamResponse:
    """WebSocket /ws/console/agent: my screen-pops and my queue state, as the AMI bridge publishes them."""
    me = username(request)
    ws = await open_live_socket(request)
    bus = ctx_of(request).bus
    subs = [await bus.subscribe(t) for t in (Topic.AGENT_SCREENPOP, Topic.LIVE_AGENTS, Topic.LIVE_AMI,
                                             LIVE_PARTIALS)]
    # AudioSocket stream UUID -> contact id, for the calls connected to me: only my calls' partials
    my_streams: dict[str, int] = {}
    # Partials of streams not (yet) named by a screen-pop: the stream and the bridge's AgentConnect
    # start together, so a call's first partials can come first. The last few per stream are kept
    # (in memory, for this socket only) and shown once the screen-pop names the stream.
    early: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    async def send_partial(stream: str, contact_id: int, message: dict[str, Any]) -> None:
        # no forgetting on "end": a call's caller and agent streams share its id and end apart
        await ws.send_json({"type": "partial", "contact_id": contact_id, "text": message.get("text", ""),
                            "final": bool(message.get("final")), "end": bool(message.get("end")),
                            "speaker": message.get("speaker")})

    async def forward(sub: Any, kind: str) -> None:
        async for message in sub:
            if message.get("username") == me and not ws.closed:
                await ws.send_json({"type": kind, **message})
                if kind == "screenpop" and message.get("event") == "connected" and message.get("live_stream"):
                    stream = str(message["live_stream"])
                    my_streams[stream] = int(message["contact_id"])
                    while len(my_streams) > EARLY_STREAMS:  # the calls of a long shift, not forever
                        del my_streams[next(iter(my_streams))]
                    for earlier in early.pop(stream, []):
                        await send_partial(stream, my_streams.get(stream, int(message["contact_id"])), earlier)

    async def forward_partials(sub: Any) -> None:
        async for message in sub:
            stream = str(message.get("call_id"))
            contact_id = my_streams.get(stream)
            if ws.closed:
                continue
            if contact_id is None:
                kept = early.setdefault(stream, [])
                kept.append(message)
                del kept[:-EARLY_PER_STREAM]
                early.move_to_end(stream)
                while len(early) > EARLY_STREAMS:
                    early.popitem(last=False)
                continue
            await send_partial(stream, contact_id, message)

    async def forward_phone(sub: Any) -> None:
        async for message in sub:
            if not ws.closed:
                await ws.send_json({"type": "phone", "known": True, **message})

    tasks = [asyncio.create_task(forward(subs[0], "screenpop")), asyncio.create_task(forward(subs[1], "agent")),
             asyncio.create_task(forward_phone(subs[2])), asyncio.create_task(forward_partials(subs[3]))]
    await ws.send_json({"type": "hello", "username": me})
    await ws.send_json(phone_status(request).snapshot())
    await hold_until_closed(ws, tasks, subs)
    return ws


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/agent", agent_page)
    r.add_get("/api/console/agent/state", get_state)
    r.add_post("/api/console/agent/state", post_state)
    r.add_get("/api/console/contacts/{id}", get_contact)
    r.add_post("/api/console/contacts/{id}/record", save_record)
    r.add_get("/api/console/inbox", inbox)
    r.add_get("/api/console/kb", knowledge)
    r.add_get("/ws/console/agent", agent_socket)
