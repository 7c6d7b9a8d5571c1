"""Supervisors: the live call list and listen / whisper / barge on any call in it.

The list is the AMI bridge's live state (``ami_live_calls``) joined with the contact record
(caller, language, menu path). Listening in is a ``supervise`` job on ``agent.commands``: the
bridge originates a call to the supervisor's phone that runs ChanSpy on the agent's channel
(ivr.ami.supervise). Every request is audited: who, whose call, when, which mode.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ivr.ami.metrics import _queue_config
from ivr.ami.models import LiveCall
from ivr.ami.supervise import AUDIT_ACTION, MODES
from ivr.console.http import audit_request, iso, username
from ivr.console.phone_status import phone_status
from ivr.console.render import ctx_of
from ivr.contracts import Stream
from ivr.db.models import Contact
from ivr.web.auth import requires
from ivr.web.bodies import Body, one_of, read_model
from ivr.web.errors import json_error

SUPERVISORS = ("supervisor",)  # and admin (ivr.web.auth.requires lets admin through)


async def live_calls(request: web.Request) -> list[dict[str, Any]]:
    ctx = ctx_of(request)
    qconf = _queue_config(ctx.settings)
    by_extension = {a.extension: a for a in qconf.agents} if qconf else {}
    async with ctx.db.session() as session:
        calls = list((await session.execute(select(LiveCall).order_by(LiveCall.joined_at))).scalars())
        ids = [c.contact_id for c in calls if c.contact_id is not None]
        contacts = {c.id: c for c in (await session.execute(
            select(Contact).options(selectinload(Contact.citizen)).where(Contact.id.in_(ids)))).scalars()} if ids else {}
    items = []
    for call in calls:
        contact = contacts.get(call.contact_id) if call.contact_id is not None else None
        agent = by_extension.get(call.agent or "")  # the bridge keeps the answering endpoint
        items.append({
            "call": call.linkedid, "state": call.state, "queue": call.queue, "extension": call.agent,
            "agent": agent.username if agent else None, "agent_name": agent.name if agent else call.agent,
            "since": iso(call.joined_at),
            "answered_at": iso(contact.answered_at) if contact else None,
            "contact_id": call.contact_id,
            "caller": contact.citizen.identity if contact and contact.citizen else None,
            "language": contact.language if contact else None,
            "menu_path": [s.strip() for s in (contact.ivr_path or "").split(">") if s.strip()] if contact else [],
        })
    return items


@requires(*SUPERVISORS)
async def get_calls(request: web.Request) -> web.Response:
    """GET /api/console/calls: every call waiting in a queue or talking to an agent now."""
    return web.json_response({"items": await live_calls(request), "modes": list(MODES),
                              "phone": phone_status(request).snapshot()})


class SuperviseIn(Body):
    call: str = Field(min_length=1, description="the call's id (linkedid) from /api/console/calls")
    mode: Annotated[str, one_of(MODES, "듣기·귓속말·끼어들기 중 하나")]


@requires(*SUPERVISORS)
async def post_supervise(request: web.Request) -> web.Response:
    """POST /api/console/calls/supervise {"call": linkedid, "mode": listen|whisper|barge}."""
    body = await read_model(request, SuperviseIn)
    mode, call_id = body.mode, body.call
    ctx, me = ctx_of(request), username(request)
    async with ctx.db.session() as session:
        call = await session.get(LiveCall, call_id)
    qconf = _queue_config(ctx.settings)
    agent = next((a for a in qconf.agents if call is not None and a.extension == call.agent), None) if qconf else None
    if call is None or call.state != "connected" or agent is None:
        raise json_error(409, "that call is not talking to an agent now / 지금 상담원과 통화 중인 전화가 아닙니다")
    if qconf is None or not any(a.username == me for a in qconf.agents):
        raise json_error(409, f"{me} has no phone in agents.yaml: add an entry with your username and an extension"
                              f" / agents.yaml에 {me}의 전화(내선)가 없습니다")
    problem = phone_status(request).problem()
    if problem:
        raise json_error(503, problem)
    command = {"action": "supervise", "username": me, "supervisor": me, "agent": agent.username, "mode": mode,
               "call": call.linkedid}
    # Audited before it is sent: no listen-in happens without its record.
    # (each later switch by the supervisor's keys is audited alike by the AMI bridge)
    await audit_request(request, AUDIT_ACTION, f"agent:{agent.username}", mode=mode, call=call.linkedid,
                        contact_id=call.contact_id)
    job_id = await ctx.bus.enqueue(Stream.AGENT_COMMANDS, command)
    return web.json_response({"queued": True, "job_id": job_id, "command": command}, status=202)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/console/calls", get_calls)
    app.router.add_post("/api/console/calls/supervise", post_supervise)
