"""AMI events -> the counselling record, idempotently, many events per transaction.

Each call is followed by its ``Linkedid`` (= ``contacts.call_id``). A batch of events is
applied in one transaction (group commit): contacts the IVR did not write are created by
Linkedid, timeline rows go in with ``ON CONFLICT (external_id) DO NOTHING`` and only the rows
that really went in change the contact, the live-call table and the agent state. Replaying
an event, or a whole stretch of them after a reconnect, therefore changes nothing.

What each event is and does is its handler's (``ivr.ami.handlers``, one per event name,
registered by name); the SQL is ``ivr.ami.statements``. This module runs the batch: the
contacts of its calls, the timeline rows, the handlers of the rows that went in, then every
change in a few statements, the contact rows locked first in id order (``lock_contacts``).
Bus jobs go to the ``ami_outbox`` table in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import sitetime
from ivr.ami.handlers import (
    CALLBACK_LEG,
    Batch,
    Effects,
    Fact,
    _int,
    extension_of,
    external_id,
    handler_for,
    reads,
    registered_events,
)
from ivr.ami.models import AgentState, LiveCall
from ivr.ami.statements import UNOBSERVED, ContactUpdates, fill_outcome, statements_for
from ivr.contracts import Stream, Topic
from ivr.db.models import Agent, Channel, Citizen, Contact, ContactEvent
from ivr.records import NewCall, ensure_call_contacts, insert_for, lock_contacts, normalize_phone
from ivr.speech.live_stream import live_stream_id
from ivr.webrtc.slots import contact_channel

log = logging.getLogger("dasan.ami.ingest")

# Asterisk device states (app_queue member Status).
DEVICE_NOT_INUSE, DEVICE_INUSE, DEVICE_BUSY, DEVICE_RINGING, DEVICE_RINGINUSE, DEVICE_ONHOLD = 1, 2, 3, 6, 7, 8
ON_CALL_STATUSES = {DEVICE_INUSE, DEVICE_BUSY, DEVICE_RINGINUSE, DEVICE_ONHOLD}

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
_READ = (registered_events() - {"VarSet", "UserEvent"}) | MEMBER_EVENTS | {"Reload"}


def wanted_event(name: str, raw: str) -> bool:
    """Whether ``apply`` reads this event's fields (decided on the raw text, before parsing).

    About nine in ten of a call's events (VarSet, Newexten, RTCP, DeviceStateChange...) are
    only counted, so the connection queues them as ``{"Event": name}`` without parsing.
    """
    return name in _READ or reads(name, raw)


class Ingester:
    """Applies batches of AMI events; holds small caches that are rebuilt from the DB."""

    def __init__(self, recordings_dir: Path | None = None, wrapup_seconds: dict[str, int] | None = None,
                 default_wrapup: int = 10) -> None:
        self.recordings_dir = recordings_dir
        self.agent_ids: dict[str, int] = {}  # extension -> agents.id
        self.usernames: dict[str, str] = {}  # extension -> agents.username
        self._agents_reloaded = False
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

    async def agent_id(self, session: AsyncSession, interface: str | None) -> int | None:
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
            handler = handler_for(event)
            fact = handler.fact(event) if handler is not None else None
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
        statements = statements_for(session)
        inserted = {r[0] for r in await statements.timeline.execute(session, rows)} if rows else set()
        new = [f for f in unique if f.external_id in inserted]
        effects.facts_new = len(new)
        if not new:
            return
        effects.changed = True
        batch = Batch(session, now, effects, self)
        for f in new:
            contact_id, citizen_id = contacts[f.linkedid]
            handler = handler_for(f.event)
            assert handler is not None  # a fact is only made by its event's handler
            await handler.apply(batch, f, contact_id, citizen_id)
        updates = batch.updates
        for linkedid in legs:
            # A callback's call is on the original contact's timeline, but its queue, wait,
            # hang-up and outcome are not the original call's: only the counsellor is kept.
            cid = contacts[linkedid][0]
            agent = updates.ops.pop(cid, {}).get("agent_id")
            if agent is not None:
                updates.first(cid, "agent_id", agent[1])
        callers_gone = [(f, cid) for f, cid in batch.hangups if f.event.get("Uniqueid") == f.linkedid]
        # The batch's contact rows locked first, in id order, as the IVR's record does: the two
        # writers then wait for each other in one order and never deadlock.
        await lock_contacts(session, [*updates.ops, *(cid for _, cid in callers_gone)])
        await self._close_lost_callers(session, callers_gone, updates, now)
        await updates.execute(session, now)
        await batch.live.execute(session, now)
        if batch.recording_rows:
            await statements.recordings.execute(session, batch.recording_rows)
        if batch.hangups:
            await self._recordings_finished(session, batch.hangups, now, effects)

    async def _close_lost_callers(self, session: AsyncSession, gone: list[tuple[Fact, int]], updates: ContactUpdates,
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
            await statements_for(session).timeline.execute(session, rows)

    def screenpop(self, f: Fact, contact_id: int, citizen_id: int | None, kind: str) -> dict[str, Any]:
        ev = f.event
        ext = extension_of(ev.get("Interface", ""))
        return {"username": self.usernames.get(ext, ev.get("MemberName", "")), "extension": ext,
                "contact_id": contact_id, "citizen_id": citizen_id,
                "caller": self.leg_callers.get(f.linkedid) or ev.get("CallerIDNum", ""),
                "queue": ev.get("Queue", ""), "event": kind,
                "live_stream": live_stream_id(f.linkedid) if f.linkedid else None}

    def _relative(self, path: str) -> str:
        if self.recordings_dir is not None:
            try:
                return str(Path(path).relative_to(self.recordings_dir))
            except ValueError:
                pass
        return path

    def recording_row(self, contact_id: int, path: str, now: datetime) -> dict[str, Any]:
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
        statements = statements_for(session)
        # The timeline row says it happened (once: external_id is unique); the outbox row, in
        # the same transaction, is the job until the bus has it.
        inserted = await statements.timeline.execute(session, [
            {"contact_id": job["contact_id"], "kind": "recording_finished", "source": "ami", "external_id": key,
             "data": job, "at": now} for key, job in jobs.items()
        ])
        owed = [{"key": str(key), "stream": Stream.RECORDINGS_FINISHED, "job": jobs[str(key)], "created_at": now}
                for (key,) in inserted]
        if not owed:
            return
        for job_id, key in await session.execute(statements.outbox, owed):
            effects.enqueue.append((Stream.RECORDINGS_FINISHED, jobs[key], int(job_id)))

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
            effects.publish.append((Topic.LIVE_AGENTS, agent_payload(state)))
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
            effects.publish.append((Topic.LIVE_AGENTS, agent_payload(state)))
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
                    outcome=fill_outcome(contact_table.c.outcome, outcome), updated_at=now)
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
            effects.publish.append((Topic.LIVE_AGENTS, agent_payload(state)))
            effects.changed = True
