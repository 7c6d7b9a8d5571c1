"""One handler per AMI event, registered by name: the event's identity, its timeline row, and
what it changes in the record.

A handler knows its event in one place: ``@on("AgentConnect", "agent_connected",
("DestUniqueid",), creates=True, data=...)`` says which fields make a replay the same event
(beyond Event and Uniqueid), the timeline kind, whether the event may create the call's contact,
what the timeline row keeps, and (the decorated function) what the event changes once its row
really went in. ``VarSet`` and ``UserEvent`` are told apart by their variable or user-event
name (``VarSet:CONTACT_ID``, ``UserEvent:DasanFallback``; the names come from
``ivr.contracts``). Handlers only fold their changes
into the ``Batch``; ``ivr.ami.ingest.Ingester`` writes them after every fact of the batch.

AMI events carry no id (and no time unless ``timestampevents`` is on), so an event's identity
is built from fields that differ between two real events but not between a replay and its
original (``external_id``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from ivr.ami.statements import UNOBSERVED, ContactUpdates, LivePlan
from ivr.contracts import DialplanEvent, Topic, Var

Event = dict[str, str]

# external_id prefix of the timeline row that files a callback's call (its Linkedid) under the
# original contact: the durable link, found again after a restart.
CALLBACK_LEG = "ami:callback_leg:"


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def extension_of(interface: str) -> str:
    """'PJSIP/agent1001' -> 'agent1001' (also for 'Local/agent1001@ctx')."""
    tail = interface.split("/", 1)[-1]
    return tail.split("@", 1)[0]


def external_id(event: Event, fields: Iterable[str]) -> str:
    name = event.get("Event", "")
    uniqueid = event.get("Uniqueid") or event.get("UniqueID", "")
    parts = [name, uniqueid, *(event.get(f, "") for f in fields)]
    key = "ami:" + ":".join(parts)
    if len(key) > 200:
        key = "ami:" + name + ":" + uniqueid + ":" + hashlib.sha256(key.encode()).hexdigest()[:40]
    return key[:200]


@dataclass
class Fact:
    linkedid: str
    kind: str
    external_id: str
    creates: bool
    event: Event
    data: dict[str, Any]


@dataclass
class Effects:
    """What to do after the batch committed: bus messages and jobs."""

    publish: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # (stream, job, id of the ami_outbox row that is the job's durable entry)
    enqueue: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    reload_seen: bool = False
    changed: bool = False
    # when agents now in wrap-up become available: the bridge re-derives their state then
    # (no event from Asterisk marks the end of a wrap-up)
    wrapup_ends: list[datetime] = field(default_factory=list)
    facts_new: int = 0
    facts_seen: int = 0


class Owner(Protocol):
    """What handlers use of the ingester: its caches of agents and recordings."""

    recording_paths: dict[str, str]  # linkedid -> MixMonitor file
    recorded: set[str]  # uniqueids with MixMonitorStart

    async def agent_id(self, session: AsyncSession, interface: str | None) -> int | None: ...

    def screenpop(self, f: Fact, contact_id: int, citizen_id: int | None, kind: str) -> dict[str, Any]: ...

    def recording_row(self, contact_id: int, path: str, now: datetime) -> dict[str, Any]: ...


@dataclass
class Batch:
    """The changes the new facts of one batch fold, written together after the last one."""

    session: AsyncSession
    now: datetime
    effects: Effects
    owner: Owner
    updates: ContactUpdates = field(default_factory=ContactUpdates)
    live: LivePlan = field(default_factory=LivePlan)
    hangups: list[tuple[Fact, int]] = field(default_factory=list)
    recording_rows: list[dict[str, Any]] = field(default_factory=list)


Apply = Callable[[Batch, Fact, int, int | None], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    name: str
    fact: Callable[[Event], Fact | None]
    apply: Apply


HANDLERS: dict[str, Handler] = {}
# Events told apart by one of their fields: the registry's key is "<Event>:<that field>".
_BY_FIELD = {"VarSet": "Variable", "UserEvent": "UserEvent"}


def handler_for(event: Event) -> Handler | None:
    name = event.get("Event", "")
    by = _BY_FIELD.get(name)
    return HANDLERS.get(f"{name}:{event.get(by, '')}" if by else name)


def registered_events() -> frozenset[str]:
    """Event names some handler reads (VarSet and UserEvent only for some names: ``reads``)."""
    return frozenset(name.partition(":")[0] for name in HANDLERS)


def reads(name: str, raw: str) -> bool:
    """Whether a handler reads this event, decided on its raw text before it is parsed."""
    by = _BY_FIELD.get(name)
    if by is None:
        return name in HANDLERS
    return any(key.startswith(f"{name}:") and f"\r\n{by}: {key.partition(':')[2]}\r\n" in f"{raw}\r\n"
               for key in HANDLERS)


def _channel(event: Event) -> dict[str, Any]:
    return {"channel": event.get("Channel", ""), "uniqueid": event.get("Uniqueid", "")}


def _timeline_fact(kind: str, identity: tuple[str, ...], creates: bool,
                   data: Callable[[Event], dict[str, Any]]) -> Callable[[Event], Fact | None]:
    def fact(event: Event) -> Fact | None:
        linkedid = event.get("Linkedid") or event.get("UniqueID") or ""
        if not linkedid:
            return None
        return Fact(linkedid, kind, external_id(event, identity), creates, event, data(event))
    return fact


def on(name: str, kind: str = "", identity: tuple[str, ...] = (), creates: bool = False,
       data: Callable[[Event], dict[str, Any]] = _channel,
       fact: Callable[[Event], Fact | None] | None = None) -> Callable[[Apply], Apply]:
    """Register the decorated function as the handler of ``name``."""
    def register(apply: Apply) -> Apply:
        if name in HANDLERS:
            raise ValueError(f"two handlers for AMI event {name}")
        HANDLERS[name] = Handler(name, fact or _timeline_fact(kind, identity, creates, data), apply)
        return apply
    return register


# -- the queue: a caller waits, a counsellor is offered the call, answers, finishes --
def _agent(event: Event) -> dict[str, Any]:
    return {**_channel(event), "queue": event.get("Queue"), "interface": event.get("Interface"),
            "member": event.get("MemberName"), "agent_uniqueid": event.get("DestUniqueid")}


def _caller(event: Event) -> dict[str, Any]:
    return {**_channel(event), "queue": event.get("Queue"), "position": _int(event.get("Position"))}


_QUEUE_PLACE = ("Queue", "Context", "Exten", "Priority", "Position")


@on("QueueCallerJoin", "queue_join", (*_QUEUE_PLACE, "Count"), creates=True,
    data=lambda e: {**_caller(e), "caller": e.get("CallerIDNum"), "language": e.get("Language")})
async def queue_caller_join(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    b.updates.set(contact_id, "queue", f.event.get("Queue"))
    b.live.upsert(f.linkedid, contact_id, f.event.get("Queue"), "queued", None)


@on("AgentCalled", "agent_offered", ("DestUniqueid",), creates=True, data=_agent)
async def agent_called(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    await b.owner.agent_id(b.session, f.event.get("Interface"))  # knows the counsellor's username
    b.effects.publish.append((Topic.AGENT_SCREENPOP, b.owner.screenpop(f, contact_id, citizen_id, "offered")))


@on("AgentRingNoAnswer", "agent_no_answer", ("DestUniqueid",), creates=True, data=_agent)
async def agent_ring_no_answer(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    return None  # the timeline row is all


@on("AgentConnect", "agent_connected", ("DestUniqueid",), creates=True,
    data=lambda e: {**_agent(e), "hold_time": _int(e.get("HoldTime")), "ring_time": _int(e.get("RingTime"))})
async def agent_connect(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    ev, u = f.event, b.updates
    u.set(contact_id, "queue", ev.get("Queue"))
    u.set(contact_id, "agent_id", await b.owner.agent_id(b.session, ev.get("Interface")))
    u.set(contact_id, "wait_seconds", float(_int(ev.get("HoldTime"))))
    u.first(contact_id, "answered_at", b.now)
    u.set(contact_id, "outcome", "answered")
    b.live.upsert(f.linkedid, contact_id, ev.get("Queue"), "connected", extension_of(ev.get("Interface", "")))
    b.effects.publish.append((Topic.AGENT_SCREENPOP, b.owner.screenpop(f, contact_id, citizen_id, "connected")))


@on("AgentComplete", "agent_complete", ("DestUniqueid",), creates=True,
    data=lambda e: {**_agent(e), "hold_time": _int(e.get("HoldTime")), "talk_time": _int(e.get("TalkTime")),
                    "reason": e.get("Reason")})
async def agent_complete(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    ev, u = f.event, b.updates
    talk = float(_int(ev.get("TalkTime")))
    u.set(contact_id, "queue", ev.get("Queue"))
    u.set(contact_id, "agent_id", await b.owner.agent_id(b.session, ev.get("Interface")))
    u.first(contact_id, "wait_seconds", float(_int(ev.get("HoldTime"))))
    u.set(contact_id, "talk_seconds", talk)
    u.first(contact_id, "answered_at", b.now - timedelta(seconds=talk))
    u.set(contact_id, "outcome", "answered")
    reason = (ev.get("Reason") or "").lower()
    u.set(contact_id, "hangup_side", {"agent": "agent", "caller": "caller", "transfer": "agent"}.get(reason))
    b.live.delete(f.linkedid)


@on("QueueCallerAbandon", "queue_abandon", _QUEUE_PLACE, creates=True,
    data=lambda e: {**_caller(e), "hold_time": _int(e.get("HoldTime")),
                    "original_position": _int(e.get("OriginalPosition"))})
async def queue_caller_abandon(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    u = b.updates
    u.set(contact_id, "queue", f.event.get("Queue"))
    u.set(contact_id, "wait_seconds", float(_int(f.event.get("HoldTime"))))
    u.set(contact_id, "outcome", "abandoned")
    u.first(contact_id, "hangup_side", "caller")
    b.live.delete(f.linkedid)


@on("QueueCallerLeave", "queue_leave", (*_QUEUE_PLACE, "Count"), data=_caller)
async def queue_caller_leave(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    b.live.delete_if_queued(f.linkedid)


# -- recording --
@on("MixMonitorStart", "recording_started", ("Context", "Exten", "Priority"), creates=True)
async def mix_monitor_start(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    b.owner.recorded.add(f.event.get("Uniqueid", ""))


def _recording_file(event: Event) -> Fact | None:
    if not event.get("Value"):
        return None
    return Fact(event.get("Linkedid", ""), "recording_file", external_id(event, ("Variable", "Value")), True, event,
                {"path": event["Value"], "uniqueid": event.get("Uniqueid", "")})


@on("VarSet:MIXMONITOR_FILENAME", fact=_recording_file)
async def recording_file(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    b.owner.recording_paths[f.linkedid] = f.data["path"]
    b.recording_rows.append(b.owner.recording_row(contact_id, f.data["path"], b.now))


# -- the end of a call --
@on("HangupRequest", "hangup_request",
    data=lambda e: {**_channel(e), "side": "caller" if e.get("Uniqueid") == e.get("Linkedid") else "agent"})
async def hangup_request(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    b.updates.first(contact_id, "hangup_side", f.data["side"])


@on("Hangup", "hangup", data=lambda e: {**_channel(e), "cause": e.get("Cause"), "cause_txt": e.get("Cause-txt")})
async def hangup(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    if f.event.get("Uniqueid") == f.linkedid:
        b.updates.first(contact_id, "ended_at", b.now)
        # The call is over: never left without an outcome (a Cdr may still say how).
        b.updates.first(contact_id, "outcome", UNOBSERVED)
        b.live.delete(f.linkedid)
    b.hangups.append((f, contact_id))


_CDR_FIELDS = ("Source", "Destination", "Channel", "DestinationChannel", "LastApplication", "LastData", "StartTime",
               "AnswerTime", "EndTime", "Duration", "BillableSeconds", "Disposition", "UniqueID", "UserField")


@on("Cdr", "cdr", ("DestinationChannel", "StartTime", "AnswerTime", "EndTime", "Disposition"),
    data=lambda e: {k: e.get(k, "") for k in _CDR_FIELDS})
async def cdr(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    """What a Cdr says about the call, for contacts whose queue events were missed (the
    bridge was away between the queue and the hang-up): only empty (or ``unobserved``)
    columns are filled, the queue events' exact values win. Talk time from a Cdr is the
    caller leg's billable seconds: an upper bound (the IVR and the wait are in it)."""
    record, u = f.data, b.updates
    if "fallback" in (record.get("UserField") or ""):
        u.set(contact_id, "ivr_fallback", True)
    destination = record.get("DestinationChannel") or ""
    queued = record.get("LastApplication") == "Queue"
    if destination and record.get("Disposition") == "ANSWERED":
        agent_id = await b.owner.agent_id(b.session, destination.rsplit("-", 1)[0])  # PJSIP/agent1001-0000009
        if agent_id is not None or queued:
            u.over_unobserved(contact_id, "outcome", "answered")
            u.first(contact_id, "agent_id", agent_id)
            u.first(contact_id, "talk_seconds", float(_int(record.get("BillableSeconds"))))
    elif not destination and queued:
        u.over_unobserved(contact_id, "outcome", "abandoned")
        u.first(contact_id, "hangup_side", "caller")


# -- what the dialplan tells: a callback's call, the IVR's fallback, the survey digit --
def _callback_leg(event: Event) -> Fact | None:
    """``VarSet CONTACT_ID`` on a call's first channel: the callback Originate's variables
    (``ast_set_variables`` on ``Local/...;1``, whose Uniqueid is the call's Linkedid). The IVR
    sets it on its own calls too; ``Ingester._callback_legs`` keeps only another call's contact."""
    linkedid, value = event.get("Linkedid", ""), event.get("Value", "")
    if not value.isdigit() or not linkedid or event.get("Uniqueid") != linkedid:
        return None
    return Fact(linkedid, "callback_leg", f"{CALLBACK_LEG}{linkedid}"[:200], False, event,
                {"contact_id": int(value), "call": linkedid, "channel": event.get("Channel", "")})


@on(f"VarSet:{Var.CONTACT_ID}", fact=_callback_leg)
async def callback_leg(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    return None  # the call was filed under the original contact (Ingester._callback_legs)


def _user_event(kind: str, creates: bool, data: Callable[[Event], dict[str, Any]]) -> Callable[[Event], Fact | None]:
    """UserEvent(<name>,...) of the rendered dialplan: once per channel; its Linkedid is the call."""
    def fact(event: Event) -> Fact | None:
        linkedid = event.get("Linkedid", "")
        if not linkedid:
            return None
        return Fact(linkedid, kind, external_id(event, ("UserEvent",)), creates, event, {**_channel(event), **data(event)})
    return fact


def _score(event: Event) -> dict[str, Any]:
    score = _int(event.get("Score"), 0)
    return {"score": score if 1 <= score <= 5 else None}


# The IVR failed or decided nothing: the dialplan queued the caller itself.
@on(f"UserEvent:{DialplanEvent.FALLBACK}",
    fact=_user_event("ivr_fallback", True, lambda e: {"agi_status": e.get("AgiStatus", "")}))
async def dasan_fallback(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    b.updates.set(contact_id, "ivr_fallback", True)


# The survey digit the dialplan read while the IVR was away.
@on(f"UserEvent:{DialplanEvent.SURVEY}", fact=_user_event("survey_dialplan", False, _score))
async def dasan_survey(b: Batch, f: Fact, contact_id: int, citizen_id: int | None) -> None:
    b.updates.first(contact_id, "satisfaction", f.data.get("score"))  # the IVR's own store wins
    # The dialplan asks only after a counsellor answered (ANSWEREDTIME).
    b.updates.over_unobserved(contact_id, "outcome", "answered")
