"""AMI events -> the counselling record, idempotently, many events per transaction.

Each call is followed by its ``Linkedid`` (= ``contacts.call_id``). A batch of events is
applied in one transaction (group commit): contacts the IVR did not write are created by
Linkedid, timeline rows go in with ``ON CONFLICT (external_id) DO NOTHING`` and only the rows
that really went in change the contact, the live-call table and the agent state. Replaying
an event, or a whole stretch of them after a reconnect, therefore changes nothing.

AMI events carry no id (and no time unless ``timestampevents`` is on), so an event's identity
is built from fields that differ between two real events but not between a replay and its
original: the event name, the channel's Uniqueid and a per-event set of fields (the agent
leg's DestUniqueid for AgentCalled/Connect/Complete, queue and dialplan position for
QueueCallerJoin/Leave/Abandon, ... see ``_IDENTITY``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import sitetime
from ivr.ami.models import AgentState, LiveCall
from ivr.db.json_insert import JsonInsert
from ivr.db.models import Agent, Channel, Citizen, Contact, ContactEvent, Recording
from ivr.records import NewCall, ensure_call_contacts, insert_for, lock_contacts, normalize_phone
from ivr.webrtc.slots import contact_channel

log = logging.getLogger("dasan.ami.ingest")

# Asterisk device states (app_queue member Status).
DEVICE_NOT_INUSE, DEVICE_INUSE, DEVICE_BUSY, DEVICE_RINGING, DEVICE_RINGINUSE, DEVICE_ONHOLD = 1, 2, 3, 6, 7, 8
ON_CALL_STATUSES = {DEVICE_INUSE, DEVICE_BUSY, DEVICE_RINGINUSE, DEVICE_ONHOLD}

# event -> (timeline kind, identity fields beyond Event+Uniqueid, may create the contact)
_IDENTITY: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "QueueCallerJoin": ("queue_join", ("Queue", "Context", "Exten", "Priority", "Position", "Count"), True),
    "AgentCalled": ("agent_offered", ("DestUniqueid",), True),
    "AgentRingNoAnswer": ("agent_no_answer", ("DestUniqueid",), True),
    "AgentConnect": ("agent_connected", ("DestUniqueid",), True),
    "AgentComplete": ("agent_complete", ("DestUniqueid",), True),
    "QueueCallerAbandon": ("queue_abandon", ("Queue", "Context", "Exten", "Priority", "Position"), True),
    "QueueCallerLeave": ("queue_leave", ("Queue", "Context", "Exten", "Priority", "Position", "Count"), False),
    "MixMonitorStart": ("recording_started", ("Context", "Exten", "Priority"), True),
    "HangupRequest": ("hangup_request", (), False),
    "Hangup": ("hangup", (), False),
    "Cdr": ("cdr", ("DestinationChannel", "StartTime", "AnswerTime", "EndTime", "Disposition"), False),
}
# UserEvent(<name>,...) of the rendered dialplan -> timeline kind (identity: the name, once per channel).
USER_EVENTS = {
    "DasanFallback": ("ivr_fallback", True),  # the IVR failed or decided nothing: queued by the dialplan
    "DasanSurvey": ("survey_dialplan", False),  # the survey digit the dialplan read while the IVR was away
}
# The outcome of a call that ended unseen (the bridge or the IVR away); weaker than any
# other outcome, so a later Cdr (or the IVR's own write) replaces it.
UNOBSERVED = "unobserved"
# The dialplan's places between the IVR's choice of queue and the queue (the rendered
# extensions.conf): a caller whose channel hangs up there was lost on the way to the queue.
# context -> (where, whether the caller is lost there only if it never joined a queue: in
# dasan-queue after Queue() the caller is in the survey, answered).
LOST_AT = {"dasan-queue": ("consent_notice", True), "dasan-queue-options": ("consent_notice", True),
           "dasan-callback-request": ("callback_offer", False)}
MEMBER_EVENTS = {
    "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause", "QueueMemberStatus",
    "QueueMemberPenalty", "QueueMember",
}
_READ = frozenset(_IDENTITY) | MEMBER_EVENTS | {"Reload", "UserEvent"}
# external_id prefix of the timeline row that files a callback's call (its Linkedid) under the
# original contact: the durable link, found again after a restart.
CALLBACK_LEG = "ami:callback_leg:"


def wanted_event(name: str, raw: str) -> bool:
    """Whether ``apply`` reads this event's fields (decided on the raw text, before parsing).

    About nine in ten of a call's events (VarSet, Newexten, RTCP, DeviceStateChange...) are
    only counted, so the connection queues them as ``{"Event": name}`` without parsing.
    """
    if name == "VarSet":  # CONTACT_ID: a callback's Originate says whose call it is
        return "\r\nVariable: MIXMONITOR_FILENAME" in raw or "\r\nVariable: CONTACT_ID\r\n" in raw
    if name == "UserEvent":
        return "\r\nUserEvent: Dasan" in raw
    return name in _READ


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def extension_of(interface: str) -> str:
    """'PJSIP/agent1001' -> 'agent1001' (also for 'Local/agent1001@ctx')."""
    tail = interface.split("/", 1)[-1]
    return tail.split("@", 1)[0]


def external_id(event: dict[str, str], fields: Iterable[str]) -> str:
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
    event: dict[str, str]
    data: dict[str, Any]


@dataclass
class Effects:
    """What to do after the batch committed: bus messages and jobs."""

    publish: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # (stream, job, id of the contact_events row that is the job's durable outbox entry)
    enqueue: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    reload_seen: bool = False
    changed: bool = False
    # when agents now in wrap-up become available: the bridge re-derives their state then
    # (no event from Asterisk marks the end of a wrap-up)
    wrapup_ends: list[datetime] = field(default_factory=list)
    facts_new: int = 0
    facts_seen: int = 0


def _fact(event: dict[str, str]) -> Fact | None:
    name = event.get("Event", "")
    if name == "VarSet":
        if event.get("Variable") == "MIXMONITOR_FILENAME" and event.get("Value"):
            return Fact(
                event.get("Linkedid", ""), "recording_file",
                external_id(event, ("Variable", "Value")), True, event,
                {"path": event["Value"], "uniqueid": event.get("Uniqueid", "")},
            )
        return _callback_leg(event)
    if name == "UserEvent":
        return _user_fact(event)
    spec = _IDENTITY.get(name)
    if spec is None:
        return None
    kind, fields, creates = spec
    linkedid = event.get("Linkedid") or event.get("UniqueID") or ""
    if not linkedid:
        return None
    data: dict[str, Any] = {"channel": event.get("Channel", ""), "uniqueid": event.get("Uniqueid", "")}
    if name.startswith("Agent"):
        data.update(queue=event.get("Queue"), interface=event.get("Interface"), member=event.get("MemberName"),
                    agent_uniqueid=event.get("DestUniqueid"))
        if name == "AgentConnect":
            data.update(hold_time=_int(event.get("HoldTime")), ring_time=_int(event.get("RingTime")))
        if name == "AgentComplete":
            data.update(hold_time=_int(event.get("HoldTime")), talk_time=_int(event.get("TalkTime")),
                        reason=event.get("Reason"))
    elif name.startswith("QueueCaller"):
        data.update(queue=event.get("Queue"), position=_int(event.get("Position")))
        if name == "QueueCallerAbandon":
            data.update(hold_time=_int(event.get("HoldTime")), original_position=_int(event.get("OriginalPosition")))
        if name == "QueueCallerJoin":
            data.update(caller=event.get("CallerIDNum"), language=event.get("Language"))
    elif name == "Hangup":
        data.update(cause=event.get("Cause"), cause_txt=event.get("Cause-txt"))
    elif name == "HangupRequest":
        data.update(side="caller" if event.get("Uniqueid") == event.get("Linkedid") else "agent")
    elif name == "Cdr":
        data = {k: event.get(k, "") for k in (
            "Source", "Destination", "Channel", "DestinationChannel", "LastApplication", "LastData", "StartTime",
            "AnswerTime", "EndTime", "Duration", "BillableSeconds", "Disposition", "UniqueID", "UserField")}
    return Fact(linkedid, kind, external_id(event, fields), creates, event, data)


def _callback_leg(event: dict[str, str]) -> Fact | None:
    """``VarSet CONTACT_ID`` on a call's first channel: the callback Originate's variables
    (``ast_set_variables`` on ``Local/...;1``, whose Uniqueid is the call's Linkedid). The IVR
    sets it on its own calls too; ``Ingester._callback_legs`` keeps only another call's contact."""
    linkedid, value = event.get("Linkedid", ""), event.get("Value", "")
    if event.get("Variable") != "CONTACT_ID" or not value.isdigit() or not linkedid \
            or event.get("Uniqueid") != linkedid:
        return None
    return Fact(linkedid, "callback_leg", f"{CALLBACK_LEG}{linkedid}"[:200], False, event,
                {"contact_id": int(value), "call": linkedid, "channel": event.get("Channel", "")})


def _user_fact(event: dict[str, str]) -> Fact | None:
    """UserEvent(DasanFallback|DasanSurvey,...) from the dialplan; the channel's Linkedid is the call."""
    spec = USER_EVENTS.get(event.get("UserEvent", ""))
    linkedid = event.get("Linkedid", "")
    if spec is None or not linkedid:
        return None
    kind, creates = spec
    data: dict[str, Any] = {"channel": event.get("Channel", ""), "uniqueid": event.get("Uniqueid", "")}
    if kind == "survey_dialplan":
        score = _int(event.get("Score"), 0)
        data["score"] = score if 1 <= score <= 5 else None
    else:
        data["agi_status"] = event.get("AgiStatus", "")
    return Fact(linkedid, kind, external_id(event, ("UserEvent",)), creates, event, data)


@dataclass(frozen=True)
class _Statements:
    """The batch's INSERTs, built once per back-end."""

    timeline: JsonInsert
    finished: JsonInsert
    recordings: JsonInsert
    live_queued: Any
    live_other: Any


_STATEMENTS: dict[str, _Statements] = {}
_TIMELINE_COLUMNS = ("contact_id", "kind", "source", "external_id", "data", "at")
_RECORDING_COLUMNS = ("contact_id", "path", "format", "integrity", "legal_hold", "created_at",
                      "transcription_status", "transcription_attempts")


def _statements(session: AsyncSession) -> _Statements:
    dialect = session.get_bind().dialect
    found = _STATEMENTS.get(dialect.name)
    if found is None:
        events: Any = ContactEvent.__table__
        recordings: Any = Recording.__table__
        live = insert_for(session, LiveCall.__table__)
        set_ = {c: live.excluded[c] for c in ("contact_id", "queue", "state", "agent", "updated_at")}
        found = _STATEMENTS[dialect.name] = _Statements(
            timeline=JsonInsert(dialect, events, _TIMELINE_COLUMNS, ("external_id",), ("external_id",)),
            finished=JsonInsert(dialect, events, _TIMELINE_COLUMNS, ("external_id",), ("id", "external_id")),
            recordings=JsonInsert(dialect, recordings, _RECORDING_COLUMNS, ("path",)),
            live_queued=live.on_conflict_do_update(index_elements=["linkedid"],
                                                   set_={**set_, "joined_at": live.excluded.joined_at}),
            live_other=live.on_conflict_do_update(index_elements=["linkedid"], set_=set_),
        )
    return found


class _Updates:
    """Per-contact column changes folded in event order: 'set' wins, 'first' only fills."""

    def __init__(self) -> None:
        self.ops: dict[int, dict[str, tuple[str, Any]]] = {}

    def set(self, contact_id: int, column: str, value: Any) -> None:
        if value is not None:
            self.ops.setdefault(contact_id, {})[column] = ("set", value)

    def first(self, contact_id: int, column: str, value: Any) -> None:
        if value is not None:
            self.ops.setdefault(contact_id, {}).setdefault(column, ("first", value))

    def over_unobserved(self, contact_id: int, column: str, value: Any) -> None:
        """Fill an empty or ``unobserved`` outcome (a Cdr after a gap); a 'set' in this batch wins."""
        columns = self.ops.setdefault(contact_id, {})
        if columns.get(column, ("first",))[0] == "first":
            columns[column] = ("over", value)

    async def execute(self, session: AsyncSession, now: datetime) -> None:
        # Contacts changed the same way (same columns, same modes) share one executemany.
        groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
        for contact_id, columns in self.ops.items():
            signature = tuple(sorted((column, mode) for column, (mode, _) in columns.items()))
            params = {"_cid": contact_id, "_now": now, **{f"_v_{c}": v for c, (_, v) in columns.items()}}
            groups.setdefault(signature, []).append(params)
        table: Any = Contact.__table__
        for signature, rows in groups.items():
            values: dict[str, Any] = {"updated_at": bindparam("_now")}
            for column, mode in signature:
                value: Any = bindparam(f"_v_{column}")
                if mode == "set":
                    values[column] = value
                elif mode == "over":
                    values[column] = _fill_outcome(table.c[column], value)
                else:
                    values[column] = func.coalesce(table.c[column], value)
            stmt = update(table).where(table.c.id == bindparam("_cid")).values(values)
            await session.execute(stmt, rows)


def _fill_outcome(column: Any, value: Any) -> Any:
    """``value`` where the outcome is empty or ``unobserved``; any other outcome stays."""
    return case((or_(column.is_(None), column == UNOBSERVED), value), else_=column)


class _LivePlan:
    """The net change of a batch to ``ami_live_calls``: one statement per kind, not per event."""

    def __init__(self) -> None:
        self.ops: dict[str, tuple[str, dict[str, Any] | None]] = {}

    def upsert(self, linkedid: str, contact_id: int, queue: str | None, state: str, agent: str | None) -> None:
        self.ops[linkedid] = ("upsert", {"linkedid": linkedid, "contact_id": contact_id, "queue": queue,
                                         "state": state, "agent": agent})

    def delete(self, linkedid: str) -> None:
        self.ops[linkedid] = ("delete", None)

    def delete_if_queued(self, linkedid: str) -> None:
        op = self.ops.get(linkedid)
        if op is None:
            self.ops[linkedid] = ("delete_queued", None)
        elif op[0] == "upsert" and op[1] is not None and op[1]["state"] == "queued":
            self.ops[linkedid] = ("delete", None)

    async def execute(self, session: AsyncSession, now: datetime) -> None:
        for kind, condition in (("delete", None), ("delete_queued", "queued")):
            ids = sorted(k for k, (op, _) in self.ops.items() if op == kind)
            for i in range(0, len(ids), 500):
                stmt = delete(LiveCall).where(LiveCall.linkedid.in_(ids[i : i + 500]))
                if condition:
                    stmt = stmt.where(LiveCall.state == condition)
                await session.execute(stmt)
        rows = [{**r, "joined_at": now, "updated_at": now} for op, r in self.ops.values() if op == "upsert" and r]
        statements = _statements(session)
        for queued in (True, False):  # a caller (re)joining a queue restarts the wait clock
            same = [r for r in rows if (r["state"] == "queued") is queued]
            if same:
                await session.execute(statements.live_queued if queued else statements.live_other, same)


class Ingester:
    """Applies batches of AMI events; holds small caches that are rebuilt from the DB."""

    def __init__(self, recordings_dir: Path | None = None, wrapup_seconds: dict[str, int] | None = None,
                 default_wrapup: int = 10) -> None:
        self.recordings_dir = recordings_dir
        self.agent_ids: dict[str, int] = {}  # extension -> agents.id
        self.usernames: dict[str, str] = {}  # extension -> agents.username
        self._agents_reloaded = False
        self._recording_rows: list[dict[str, Any]] = []
        self.recording_paths: dict[str, str] = {}  # linkedid -> MixMonitor file
        self.recorded: set[str] = set()  # uniqueids with MixMonitorStart
        self.wrapup_seconds = wrapup_seconds or {}
        self.callback_legs: dict[str, tuple[int, int | None]] = {}  # callback Linkedid -> (contact, citizen)
        self.leg_callers: dict[str, str] = {}  # callback Linkedid -> the citizen's phone
        self._batch_legs: set[str] = set()
        self.default_wrapup = default_wrapup

    async def _load_agents(self, session: AsyncSession) -> None:
        rows = list(await session.execute(select(Agent.extension, Agent.id, Agent.username)))
        self.agent_ids = {ext: aid for ext, aid, _ in rows}
        self.usernames = {ext: name for ext, _, name in rows}

    async def _agent_id(self, session: AsyncSession, interface: str | None) -> int | None:
        if not interface:
            return None
        ext = extension_of(interface)
        if ext not in self.agent_ids and not self._agents_reloaded:
            await self._load_agents(session)  # once per batch: an unknown member is not a query per event
            self._agents_reloaded = True
        return self.agent_ids.get(ext)

    # -- the batch --
    async def apply(self, session: AsyncSession, events: list[dict[str, str]], now: datetime | None = None) -> Effects:
        now = now or datetime.now(UTC)
        effects = Effects()
        self._agents_reloaded = False
        self._recording_rows = []  # (a retried batch starts clean)
        facts: list[Fact] = []
        member_events: list[dict[str, str]] = []
        for event in events:
            name = event.get("Event", "")
            if name in MEMBER_EVENTS:
                member_events.append(event)
                continue
            if name == "Reload" and event.get("Module", "").lower() in ("app_queue", "app_queue.so", "all", ""):
                effects.reload_seen = True
                continue
            fact = _fact(event)
            if fact is not None:
                facts.append(fact)
                if fact.kind == "agent_complete":
                    member_events.append({"Event": "_CallEnded", "Interface": fact.data.get("interface") or "",
                                          "Queue": fact.data.get("queue") or ""})
        effects.facts_seen = len(facts)
        if facts:
            await self._apply_facts(session, facts, now, effects)
        if member_events:
            await self._apply_members(session, member_events, now, effects)
        return effects

    async def _ensure_contacts(self, session: AsyncSession, facts: list[Fact], now: datetime) -> dict[str, tuple[int, int | None]]:
        """The contact of every call in the batch; calls the IVR did not see (a direct queue,
        an outbound callback) get theirs here, from the event that creates them."""
        legs = await self._callback_legs(session, facts)
        self._batch_legs = set(legs)
        calls: dict[str, NewCall | None] = {}
        for f in facts:
            if f.linkedid in legs:
                continue
            if f.creates and calls.get(f.linkedid) is None:
                number = normalize_phone(f.event.get("CallerIDNum", "") or "")
                calls[f.linkedid] = NewCall(f.linkedid, number if len(number.lstrip("+")) >= 3 else "",
                                            (f.event.get("Language") or "ko")[:8],
                                            contact_channel(f.event.get("Channel", "")))
            else:
                calls.setdefault(f.linkedid, None)
        found = await ensure_call_contacts(session, [c for c in calls.values() if c is not None], now)
        unknown = sorted(lid for lid, c in calls.items() if c is None and lid not in found)
        for part in range(0, len(unknown), 500):
            rows = await session.execute(select(Contact.call_id, Contact.id, Contact.citizen_id)
                                         .where(Contact.call_id.in_(unknown[part : part + 500])))
            for call_id, cid, citizen in rows:
                found[str(call_id)] = (cid, citizen)
        found.update(legs)
        return found

    async def _callback_legs(self, session: AsyncSession, facts: list[Fact]) -> dict[str, tuple[int, int | None]]:
        """Calls of the batch that are callbacks of an earlier contact: (contact, citizen).

        Known from this batch's ``VarSet CONTACT_ID`` (when that contact is another call's,
        not the IVR marking its own), from memory, or after a restart from the durable
        ``callback_leg`` timeline row."""
        legs = {f.linkedid: self.callback_legs[f.linkedid] for f in facts if f.linkedid in self.callback_legs}
        links = {f.linkedid: int(f.data["contact_id"]) for f in facts
                 if f.kind == "callback_leg" and f.linkedid not in legs}
        if links:
            rows = await session.execute(select(Contact.id, Contact.call_id, Contact.citizen_id)
                                         .where(Contact.id.in_(sorted(set(links.values())))))
            by_id = {cid: (call_id, citizen) for cid, call_id, citizen in rows}
            for linkedid, cid in links.items():
                if cid in by_id and by_id[cid][0] != linkedid:
                    legs[linkedid] = (cid, by_id[cid][1])
        asked = sorted({f.linkedid for f in facts if f.creates} - set(legs) - set(links))
        for part in range(0, len(asked), 500):
            keys = [f"{CALLBACK_LEG}{lid}"[:200] for lid in asked[part : part + 500]]
            stored = await session.execute(
                select(ContactEvent.external_id, ContactEvent.contact_id, Contact.citizen_id)
                .join(Contact, Contact.id == ContactEvent.contact_id).where(ContactEvent.external_id.in_(keys)))
            for key, contact_id, citizen_id in stored:
                legs[str(key)[len(CALLBACK_LEG):]] = (int(contact_id), citizen_id)
        if len(self.callback_legs) > 10_000:
            self.callback_legs.clear()
            self.leg_callers.clear()
        self.callback_legs.update(legs)
        # The counsellor's screen-pop shows the citizen's number, not the Originate's caller id.
        unnamed = {lid: citizen for lid, (_, citizen) in legs.items() if citizen is not None and lid not in self.leg_callers}
        if unnamed:
            named = await session.execute(select(Citizen.id, Citizen.identity).where(
                Citizen.id.in_(sorted(set(unnamed.values()))), Citizen.identity_kind == "phone"))
            phones = {int(citizen_id): str(phone) for citizen_id, phone in named}
            self.leg_callers.update({lid: phones[c] for lid, c in unnamed.items() if c in phones})
        return legs

    async def _apply_facts(self, session: AsyncSession, facts: list[Fact], now: datetime, effects: Effects) -> None:
        contacts = await self._ensure_contacts(session, facts, now)
        legs = self._batch_legs
        facts = [f for f in facts if f.linkedid in contacts and (f.kind != "callback_leg" or f.linkedid in legs)]
        rows = []
        seen_ids: set[str] = set()
        unique: list[Fact] = []
        for f in facts:
            if f.external_id in seen_ids:
                continue
            seen_ids.add(f.external_id)
            unique.append(f)
            rows.append({"contact_id": contacts[f.linkedid][0], "kind": f.kind, "source": "ami",
                         "external_id": f.external_id, "data": f.data, "at": now})
        statements = _statements(session)
        inserted = {r[0] for r in await statements.timeline.execute(session, rows)} if rows else set()
        new = [f for f in unique if f.external_id in inserted]
        effects.facts_new = len(new)
        if not new:
            return
        effects.changed = True
        updates = _Updates()
        live = _LivePlan()
        hangups: list[tuple[Fact, int]] = []
        for f in new:
            contact_id, citizen_id = contacts[f.linkedid]
            ev, name = f.event, f.event.get("Event", "")
            if name == "QueueCallerJoin":
                updates.set(contact_id, "queue", ev.get("Queue"))
                live.upsert(f.linkedid, contact_id, ev.get("Queue"), "queued", None)
            elif name == "AgentCalled":
                await self._agent_id(session, ev.get("Interface"))
                effects.publish.append(("agent.screenpop", self._screenpop(f, contact_id, citizen_id, "offered")))
            elif name == "AgentConnect":
                updates.set(contact_id, "queue", ev.get("Queue"))
                updates.set(contact_id, "agent_id", await self._agent_id(session, ev.get("Interface")))
                updates.set(contact_id, "wait_seconds", float(_int(ev.get("HoldTime"))))
                updates.first(contact_id, "answered_at", now)
                updates.set(contact_id, "outcome", "answered")
                live.upsert(f.linkedid, contact_id, ev.get("Queue"), "connected", extension_of(ev.get("Interface", "")))
                effects.publish.append(("agent.screenpop", self._screenpop(f, contact_id, citizen_id, "connected")))
            elif name == "AgentComplete":
                talk = float(_int(ev.get("TalkTime")))
                updates.set(contact_id, "queue", ev.get("Queue"))
                updates.set(contact_id, "agent_id", await self._agent_id(session, ev.get("Interface")))
                updates.first(contact_id, "wait_seconds", float(_int(ev.get("HoldTime"))))
                updates.set(contact_id, "talk_seconds", talk)
                updates.first(contact_id, "answered_at", now - timedelta(seconds=talk))
                updates.set(contact_id, "outcome", "answered")
                reason = (ev.get("Reason") or "").lower()
                updates.set(contact_id, "hangup_side", {"agent": "agent", "caller": "caller", "transfer": "agent"}.get(reason))
                live.delete(f.linkedid)
            elif name == "QueueCallerAbandon":
                updates.set(contact_id, "queue", ev.get("Queue"))
                updates.set(contact_id, "wait_seconds", float(_int(ev.get("HoldTime"))))
                updates.set(contact_id, "outcome", "abandoned")
                updates.first(contact_id, "hangup_side", "caller")
                live.delete(f.linkedid)
            elif name == "QueueCallerLeave":
                live.delete_if_queued(f.linkedid)
            elif name == "HangupRequest":
                updates.first(contact_id, "hangup_side", f.data["side"])
            elif f.kind == "recording_file":
                self.recording_paths[f.linkedid] = f.data["path"]
                self._recording_rows.append(self._recording_row(contact_id, f.data["path"], now))
            elif name == "MixMonitorStart":
                self.recorded.add(ev.get("Uniqueid", ""))
            elif name == "Hangup":
                if ev.get("Uniqueid") == f.linkedid:
                    updates.first(contact_id, "ended_at", now)
                    # The call is over: never left without an outcome (a Cdr may still say how).
                    updates.first(contact_id, "outcome", UNOBSERVED)
                    live.delete(f.linkedid)
                hangups.append((f, contact_id))
            elif name == "Cdr":
                await self._complete_from_cdr(session, updates, contact_id, f.data)
            elif f.kind == "ivr_fallback":
                updates.set(contact_id, "ivr_fallback", True)
            elif f.kind == "survey_dialplan":
                updates.first(contact_id, "satisfaction", f.data.get("score"))  # the IVR's own store wins
                # The dialplan asks only after a counsellor answered (ANSWEREDTIME).
                updates.over_unobserved(contact_id, "outcome", "answered")
        for linkedid in legs:
            # A callback's call is on the original contact's timeline, but its queue, wait,
            # hang-up and outcome are not the original call's: only the counsellor is kept.
            cid = contacts[linkedid][0]
            agent = updates.ops.pop(cid, {}).get("agent_id")
            if agent is not None:
                updates.first(cid, "agent_id", agent[1])
        callers_gone = [(f, cid) for f, cid in hangups if f.event.get("Uniqueid") == f.linkedid]
        # The batch's contact rows locked first, in id order, as the IVR's record does: the two
        # writers then wait for each other in one order and never deadlock.
        await lock_contacts(session, [*updates.ops, *(cid for _, cid in callers_gone)])
        await self._close_lost_callers(session, callers_gone, updates, now)
        await updates.execute(session, now)
        await live.execute(session, now)
        if self._recording_rows:
            rows_, self._recording_rows = self._recording_rows, []
            await statements.recordings.execute(session, rows_)
        if hangups:
            await self._recordings_finished(session, hangups, now, effects)

    async def _complete_from_cdr(self, session: AsyncSession, updates: _Updates, contact_id: int,
                                 cdr: dict[str, Any]) -> None:
        """What a Cdr says about the call, for contacts whose queue events were missed (the
        bridge was away between the queue and the hang-up): only empty (or ``unobserved``)
        columns are filled, the queue events' exact values win. Talk time from a Cdr is the
        caller leg's billable seconds: an upper bound (the IVR and the wait are in it)."""
        if "fallback" in (cdr.get("UserField") or ""):
            updates.set(contact_id, "ivr_fallback", True)
        destination = cdr.get("DestinationChannel") or ""
        queued = cdr.get("LastApplication") == "Queue"
        if destination and cdr.get("Disposition") == "ANSWERED":
            agent_id = await self._agent_id(session, destination.rsplit("-", 1)[0])  # PJSIP/agent1001-0000009
            if agent_id is not None or queued:
                updates.over_unobserved(contact_id, "outcome", "answered")
                updates.first(contact_id, "agent_id", agent_id)
                updates.first(contact_id, "talk_seconds", float(_int(cdr.get("BillableSeconds"))))
        elif not destination and queued:
            updates.over_unobserved(contact_id, "outcome", "abandoned")
            updates.first(contact_id, "hangup_side", "caller")

    async def _close_lost_callers(self, session: AsyncSession, gone: list[tuple[Fact, int]], updates: _Updates,
                                  now: datetime) -> None:
        """Callers who hung up between the IVR's choice of queue and the queue itself (the
        consent notice, the callback offer: the dialplan's places, ``LOST_AT``) have a queue but
        no outcome: they are abandoned calls of that queue, and the timeline says where they
        were lost. A queue event of this batch (abandon, answer) decides instead; the IVR closes
        the callers it loses itself (the transfer prompt)."""
        lost = {cid: (f, *LOST_AT[context]) for f, cid in gone
                if (context := f.event.get("Context", "")) in LOST_AT
                and updates.ops.get(cid, {}).get("outcome", ("first",))[0] == "first"
                # a channel bridged to a counsellor shows them as its connected line (the survey
                # after an answered call is in dasan-queue too, even if the bridge missed the queue)
                and not (LOST_AT[context][1] and f.event.get("ConnectedLineNum", "") not in ("", "<unknown>"))}
        if not lost:
            return
        table: Any = Contact.__table__
        joined = select(ContactEvent.id).where(ContactEvent.contact_id == table.c.id,
                                               ContactEvent.kind == "queue_join").exists()
        before_queue = [cid for cid, (_f, _where, before) in lost.items() if before]
        closed = await session.execute(
            update(table).where(table.c.id.in_(sorted(lost)), table.c.queue.is_not(None), table.c.outcome.is_(None),
                                or_(table.c.id.not_in(before_queue), ~joined))
            .values(outcome="abandoned", hangup_side=func.coalesce(table.c.hangup_side, "caller"), updated_at=now)
            .returning(table.c.id, table.c.queue))
        rows = []
        for contact_id, queue in closed:
            f, where, _before = lost[contact_id]
            ev = f.event
            rows.append({"contact_id": contact_id, "kind": "abandoned", "source": "ami",
                         "external_id": external_id({**ev, "Event": "Abandoned"}, ()), "at": now,
                         "data": {"where": where, "queue": queue, "context": ev.get("Context", ""),
                                  "exten": ev.get("Exten", ""), "priority": ev.get("Priority", "")}})
        if rows:
            await _statements(session).timeline.execute(session, rows)

    def _screenpop(self, f: Fact, contact_id: int, citizen_id: int | None, kind: str) -> dict[str, Any]:
        ev = f.event
        ext = extension_of(ev.get("Interface", ""))
        return {"username": self.usernames.get(ext, ev.get("MemberName", "")), "extension": ext,
                "contact_id": contact_id, "citizen_id": citizen_id,
                "caller": self.leg_callers.get(f.linkedid) or ev.get("CallerIDNum", ""),
                "queue": ev.get("Queue", ""), "event": kind}

    def _relative(self, path: str) -> str:
        if self.recordings_dir is not None:
            try:
                return str(Path(path).relative_to(self.recordings_dir))
            except ValueError:
                pass
        return path

    def _recording_row(self, contact_id: int, path: str, now: datetime) -> dict[str, Any]:
        return {"contact_id": contact_id, "path": self._relative(path),
                "format": Path(path).suffix.lstrip(".") or "wav", "integrity": "unchecked", "legal_hold": False,
                "created_at": now, "transcription_status": "pending", "transcription_attempts": 0}

    async def _recordings_finished(self, session: AsyncSession, hangups: list[tuple[Fact, int]], now: datetime,
                                   effects: Effects) -> None:
        """Hangup of a recorded channel: a ``recordings.finished`` job, once per recording."""
        unknown = [cid for f, cid in hangups if f.event.get("Uniqueid") not in self.recorded]
        from_db: dict[int, list[dict[str, Any]]] = {}
        if unknown:  # after a restart the memory is empty: ask the timeline
            rows = await session.execute(
                select(ContactEvent.contact_id, ContactEvent.kind, ContactEvent.data).where(
                    ContactEvent.contact_id.in_(sorted(set(unknown))),
                    ContactEvent.kind.in_(["recording_started", "recording_file"]),
                )
            )
            for cid, kind, data in rows:
                from_db.setdefault(cid, []).append({"kind": kind, **(data or {})})
        jobs: dict[str, dict[str, Any]] = {}
        for f, contact_id in hangups:
            uniqueid = f.event.get("Uniqueid", "")
            recorded = uniqueid in self.recorded
            path = self.recording_paths.get(f.linkedid)
            for row in from_db.get(contact_id, []):
                if row["kind"] == "recording_started" and row.get("uniqueid") == uniqueid:
                    recorded = True
                if row["kind"] == "recording_file" and not path:
                    path = row.get("path")
            if not recorded:
                continue
            if not path:  # the layout of docs/contracts.md
                path = str((self.recordings_dir or Path("recordings")) / sitetime.local(now).strftime("%Y/%m/%d") / f"{f.linkedid}.stereo.sln")
            job = {"path": path, "call_id": f.linkedid, "contact_id": contact_id}
            jobs[f"ami:recording_finished:{uniqueid}"] = job
            self.recorded.discard(uniqueid)
            self.recording_paths.pop(f.linkedid, None)
        if not jobs:
            return
        result = await _statements(session).finished.execute(session, [
            {"contact_id": job["contact_id"], "kind": "recording_finished", "source": "ami", "external_id": key,
             "data": job, "at": now} for key, job in jobs.items()
        ])
        for event_id, key in result:
            effects.enqueue.append(("recordings.finished", jobs[key], int(event_id)))

    # -- agents --
    async def _apply_members(self, session: AsyncSession, events: list[dict[str, str]], now: datetime,
                             effects: Effects) -> None:
        extensions = sorted({extension_of(e.get("StateInterface") or e.get("Interface") or e.get("Location") or "")
                             for e in events} - {""})
        rows = (await session.execute(select(AgentState).where(AgentState.extension.in_(extensions)))).scalars()
        states = {s.extension: s for s in rows}
        changed: dict[str, AgentState] = {}
        for e in events:
            ext = extension_of(e.get("StateInterface") or e.get("Interface") or e.get("Location") or "")
            if not ext:
                continue
            state = states.get(ext)
            if state is None:
                username = (e.get("MemberName") or e.get("Name") or ext).strip() or ext
                state = AgentState(username=username[:80], extension=ext, logged_in=False, paused=False,
                                   queues={}, device_status=0, in_call=False, state="logged_out", since=now)
                session.add(state)
                states[ext] = state
            apply_member_event(state, e, now)
            changed[ext] = state
        for state in changed.values():
            new_state = derive_state(state, now, self._wrapup(state))
            if new_state != state.state:
                state.state = new_state
                state.since = now
            state.updated_at = now
            effects.publish.append(("live.agents", agent_payload(state)))
            self._note_wrapup(state, effects)
        if changed:
            effects.changed = True
        await session.flush()

    def _note_wrapup(self, state: AgentState, effects: Effects) -> None:
        if state.state == "wrapup" and state.last_call_end is not None:
            last = state.last_call_end.replace(tzinfo=UTC) if state.last_call_end.tzinfo is None else state.last_call_end
            effects.wrapup_ends.append(last + timedelta(seconds=self._wrapup(state)))

    async def expire_wrapups(self, session: AsyncSession, now: datetime | None = None) -> Effects:
        """Agents whose wrap-up time is over become available (or what else they are now);
        the others' ends are in ``wrapup_ends``."""
        now = now or datetime.now(UTC)
        effects = Effects()
        for state in (await session.execute(select(AgentState).where(AgentState.state == "wrapup")
                                            .order_by(AgentState.username))).scalars():
            new_state = derive_state(state, now, self._wrapup(state))
            if new_state == state.state:
                self._note_wrapup(state, effects)
                continue
            state.state, state.since, state.updated_at = new_state, now, now
            effects.publish.append(("live.agents", agent_payload(state)))
            effects.changed = True
        return effects

    def _wrapup(self, state: AgentState) -> int:
        values = [self.wrapup_seconds.get(q, self.default_wrapup) for q in (state.queues or {})]
        return max(values) if values else self.default_wrapup


def apply_member_event(state: AgentState, e: dict[str, str], now: datetime) -> None:
    name = e.get("Event", "")
    queues = dict(state.queues or {})
    queue = e.get("Queue", "")
    if name == "_CallEnded":
        state.last_call_end = now
        return
    if name == "QueueMemberRemoved":
        queues.pop(queue, None)
        state.queues = queues
        if not queues:
            state.logged_in = False
            state.paused = False
            state.reason = None
        return
    if queue:
        queues[queue] = _int(e.get("Penalty"), queues.get(queue, 0))
    state.queues = queues
    state.logged_in = True
    if "Paused" in e:
        state.paused = e.get("Paused") == "1"
        state.reason = (e.get("PausedReason") or None) if state.paused else None
    if "Status" in e:
        state.device_status = _int(e.get("Status"))
    if "InCall" in e:
        state.in_call = e.get("InCall") == "1"


def derive_state(state: AgentState, now: datetime, wrapup_seconds: int) -> str:
    if not state.queues:
        return "logged_out"
    if state.in_call or state.device_status in ON_CALL_STATUSES:
        return "on_call"
    if state.device_status == DEVICE_RINGING:
        return "ringing"
    if state.paused:
        return "paused"
    last = state.last_call_end
    if last is not None:
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        if now - last < timedelta(seconds=wrapup_seconds):
            return "wrapup"
    return "available"


def agent_payload(state: AgentState) -> dict[str, Any]:
    return {"username": state.username, "extension": state.extension, "state": state.state,
            "reason": state.reason, "queues": sorted(state.queues or {})}


@dataclass
class Snapshot:
    """What ``QueueStatus`` and ``CoreShowChannels`` said right after a (re)connect."""

    members: list[dict[str, str]]
    entries: list[dict[str, str]]
    channels: list[dict[str, str]]
    taken_at: datetime | None = None  # just before CoreShowChannels was asked


# Call contacts without an outcome or an end whose channels are gone at a resync are closed
# (``unobserved`` if no outcome); only those started before the channel list was asked for (a
# contact is written after its channel exists, so an earlier one missing from the list is
# gone; the slack allows for the IVR's and the bridge's clocks) and within the look-back.
ORPHAN_SLACK = timedelta(seconds=0.5)
ORPHAN_LOOKBACK = timedelta(days=1)
MESSAGE_CHANNELS = (Channel.sms, Channel.mms, Channel.chat, Channel.sns)  # threads, not calls


async def apply_snapshot(ingester: Ingester, session: AsyncSession, snap: Snapshot, now: datetime | None = None,
                         scope: str = "") -> Effects:
    """Make the live tables match Asterisk after a gap in the event stream.

    Calls we thought were live whose channels are gone ended while we were away: they get
    ``ended_at`` (if still empty), an outcome (``answered`` if we saw the agent connect, else
    ``unobserved``; a Cdr that still arrives replaces it) and a ``gap_ended`` timeline row; so
    do recent voice contacts without an outcome that we never saw live (their whole call fell
    into the gap, e.g. the IVR wrote them while the bridge was down). Callers waiting now are
    (re)inserted with their real wait (``Wait`` of QueueEntry); agents' queue memberships are
    replaced by what Asterisk reports.
    """
    now = now or datetime.now(UTC)
    effects = Effects(changed=True)
    linked = {c.get("Uniqueid", ""): c.get("Linkedid") or c.get("Uniqueid", "") for c in snap.channels}
    alive = set(linked.values())
    # ``scope``: one node of a cluster; only calls whose ids start with its systemname are its
    mine = LiveCall.linkedid.startswith(scope, autoescape=True)
    previous = (await session.execute(select(LiveCall).where(mine))).scalars().all()
    gone: dict[str, tuple[int, str]] = {}  # linkedid -> (contact, outcome)
    for call in previous:
        if call.linkedid not in alive and call.contact_id is not None:
            gone[call.linkedid] = (call.contact_id, "answered" if call.state == "connected" else UNOBSERVED)
    taken = snap.taken_at or now
    orphans = await session.execute(select(Contact.call_id, Contact.id).where(
        Contact.channel.not_in(MESSAGE_CHANNELS), or_(Contact.outcome.is_(None), Contact.ended_at.is_(None)),
        Contact.call_id.is_not(None),
        Contact.started_at > taken - ORPHAN_LOOKBACK, Contact.started_at < taken - ORPHAN_SLACK,
        Contact.call_id.startswith(scope, autoescape=True)))
    for call_id, contact_id in orphans:
        if call_id not in alive:
            gone.setdefault(str(call_id), (contact_id, UNOBSERVED))
    # Every contact row this resync changes (the gone calls', the waiting callers') is locked
    # first, in id order, as the event batches and the IVR's record do.
    queued_now = sorted({linked.get(e.get("Uniqueid", ""), e.get("Uniqueid", "")) for e in snap.entries})
    known = list(await session.scalars(select(Contact.id).where(Contact.call_id.in_(queued_now)))) if queued_now else []
    await lock_contacts(session, [*(cid for cid, _ in gone.values()), *known])
    contact_table: Any = Contact.__table__
    for linkedid, (contact_id, outcome) in sorted(gone.items(), key=lambda g: g[1][0]):  # row-lock order
        await session.execute(
            update(contact_table).where(contact_table.c.id == contact_id)
            .values(ended_at=func.coalesce(contact_table.c.ended_at, now),
                    outcome=_fill_outcome(contact_table.c.outcome, outcome), updated_at=now)
        )
        await session.execute(
            insert_for(session, ContactEvent.__table__).values(
                contact_id=contact_id, kind="gap_ended", source="ami",
                external_id=f"ami:gap_ended:{linkedid}", data={"note": "ended while AMI was disconnected"},
                at=now,
            ).on_conflict_do_nothing(index_elements=["external_id"])
        )
    await session.execute(delete(LiveCall).where(mine))
    # Callers waiting now, and callers in Queue() already bridged to an agent.
    facts: list[Fact] = []
    waiting: list[tuple[str, str, int]] = []
    for entry in snap.entries:
        uniqueid = entry.get("Uniqueid", "")
        linkedid = linked.get(uniqueid, uniqueid)
        waiting.append((linkedid, entry.get("Queue", ""), _int(entry.get("Wait"))))
        facts.append(Fact(linkedid, "queue_seen", f"ami:queue_seen:{linkedid}:{entry.get('Queue', '')}", True,
                          {**entry, "Linkedid": linkedid}, {"queue": entry.get("Queue"), "wait": _int(entry.get("Wait"))}))
    connected: list[tuple[str, str, str]] = []
    waiting_ids = {w[0] for w in waiting}
    for ch in snap.channels:
        if ch.get("Application") == "Queue" and ch.get("BridgeId") and ch.get("Uniqueid") == ch.get("Linkedid"):
            if ch["Linkedid"] not in waiting_ids:
                connected.append((ch["Linkedid"], (ch.get("ApplicationData") or "").split(",")[0], ""))
    if facts:
        contacts = await ingester._ensure_contacts(session, facts, now)
        for linkedid, queue, wait in waiting:
            if linkedid in contacts:
                await session.execute(insert_for(session, LiveCall.__table__).values(
                    linkedid=linkedid, contact_id=contacts[linkedid][0], queue=queue, state="queued",
                    joined_at=now - timedelta(seconds=wait), agent=None, updated_at=now,
                ).on_conflict_do_nothing(index_elements=["linkedid"]))
                await session.execute(update(Contact).where(Contact.id == contacts[linkedid][0]).values(
                    queue=queue, updated_at=now))
    for linkedid, queue, _ in connected:
        cid = (await session.execute(select(Contact.id).where(Contact.call_id == linkedid))).scalar_one_or_none()
        if cid is not None:
            await session.execute(insert_for(session, LiveCall.__table__).values(
                linkedid=linkedid, contact_id=cid, queue=queue, state="connected", joined_at=now, agent=None,
                updated_at=now,
            ).on_conflict_do_nothing(index_elements=["linkedid"]))
    await apply_member_snapshot(ingester, session, snap.members, now, effects)
    return effects


async def apply_member_snapshot(ingester: Ingester, session: AsyncSession, members: list[dict[str, str]],
                                now: datetime, effects: Effects) -> None:
    """Agents' memberships, pauses and states exactly as ``QueueStatus`` reported them (after a
    reconnect, and periodically: a missed member event must not leave a wrong state)."""
    states = {s.extension: s for s in (await session.execute(select(AgentState))).scalars()}
    reported: dict[str, dict[str, int]] = {}
    for m in members:
        ext = extension_of(m.get("StateInterface") or m.get("Location") or "")
        reported.setdefault(ext, {})[m.get("Queue", "")] = _int(m.get("Penalty"))
    for ext, state in states.items():
        queues = reported.get(ext, {})
        if state.queues != queues:
            state.queues = queues
    member_events = [{**m, "Event": "QueueMember"} for m in members]
    await session.flush()
    if member_events:
        await ingester._apply_members(session, member_events, now, effects)
    for state in states.values():
        new_state = derive_state(state, now, ingester._wrapup(state))
        if new_state != state.state:
            state.state, state.since = new_state, now
            effects.publish.append(("live.agents", agent_payload(state)))
            effects.changed = True
