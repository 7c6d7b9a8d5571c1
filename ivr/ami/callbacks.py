"""Queue callback: the caller keeps a place in line and is dialled back when it is their turn.

A ``callback_requests`` row (written by the IVR) waits like a caller who joined the queue at
``requested_at``: its turn comes when the queue is open (its ``hours``), nobody who joined
that queue earlier is still waiting, an agent of the queue is available and no other
callback of the queue is being dialled. Then the bridge sends an ``Originate``: the
``Local/<queue>@dasan-callback`` half (``;2``) runs ``Queue(<queue>)``, so the call is offered
to an agent through the normal skills and penalties; once the agent answers, Asterisk
reports OriginateResponse Success and the other half (``;1``, Uniqueid = our ChannelId)
continues at ``<phone>@dasan-callback-out``, which dials the citizen through the trunk.
With ``speech.live_listen`` the channel is ``Local/<queue>@dasan-callback/n``: the live fork
listens to the citizen on ``;2``, which Asterisk must not optimize away.

Success is the citizen's leg answered, never the agent's: the dialer follows ``;1`` and
takes the ``DialEnd`` whose caller is ``;1`` (DialStatus ANSWER, BUSY, NOANSWER, CONGESTION,
CHANUNAVAIL, CANCEL) and the trunk leg's ``Hangup`` Cause (17 busy, 19 no answer...).
Anything but ANSWER is retried per the queue's ``callback`` settings (queues.yaml) and
finally marked failed with the reason. Every attempt and its result go on the original
contact's timeline (``callback_attempt`` / ``callback_result``); the Originate carries
CONTACT_ID and CITIZEN_ID, so the ingester files the callback's events under that contact.

Without ``asterisk.trunk_contact`` a callback cannot reach anyone: the dialer does not start
and requests stay waiting (``dasan config check`` says so).

Several dasan nodes run a dialer each on one database: the request's row is the guard. A
dialer takes a request with one ``UPDATE ... WHERE status = 'waiting' RETURNING`` (only one
node can win it), writes its name (``dialing_by``) and a lease (``dialing_until``), and renews
the lease every third of ``bus.claim_after_seconds`` while it waits for the result; only the
dialer that holds the attempt may record its result. A node that dies stops renewing: once
the lease ran out, another node's dialer takes the request over (``take_over``, again one
conditional UPDATE). If the attempt never reached Asterisk (no call of its ChannelId was
ingested) nobody was called, so the request is dialled again at once; if the call was placed,
its result is unknown and the request is marked failed instead of calling the citizen twice.
Either way the attempt's ``callback_result`` is ``lost_with_node``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from ivr.ami.connection import AmiConnection
from ivr.ami.handlers import CALLBACK_LEG
from ivr.ami.models import AgentState, LiveCall
from ivr.contracts import Var
from ivr.db import Database
from ivr.db.models import CallbackRequest, Contact, ContactEvent
from ivr.queues import CallbackPolicy, QueueConfig
from ivr.records import dial_number, record_event

log = logging.getLogger("dasan.ami.callbacks")

# DialStatus of the citizen's leg (apps/app_dial.c) -> the result we record.
DIAL_RESULTS = {"ANSWER": "answered", "BUSY": "busy", "NOANSWER": "no_answer", "CONGESTION": "congestion",
                "CHANUNAVAIL": "unavailable", "CANCEL": "cancelled"}
CAUSE_WAIT = 5.0  # seconds to wait after a failed DialEnd for the trunk leg's Hangup (its Cause)
NO_TRUNK = ("callbacks are not dialled: asterisk.trunk_contact is not set, so a callback cannot "
            "leave this server; requests stay waiting / 발신 트렁크(asterisk.trunk_contact)가 없어 "
            "콜백을 걸지 않습니다")


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def trunk_problem(trunk_contact: str) -> str | None:
    """Why callbacks cannot be dialled with this configuration (None: they can)."""
    return None if trunk_contact.strip() else NO_TRUNK


@dataclass
class _Watch:
    """The events of one attempt's call (Linkedid = our ChannelId), as the ingest loop reads them."""

    channel_id: str
    events: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)


@dataclass
class Outcome:
    result: str  # answered | busy | no_answer | congestion | unavailable | cancelled | no_agent | failed
    reason: str = ""
    dial_status: str | None = None
    cause: str | None = None


class CallbackDialer:
    def __init__(self, conn: AmiConnection, db: Database, qconf: QueueConfig, trunk_contact: str,
                 context: str = "dasan-callback", caller_id: str = "120", poll: float = 2.0,
                 result_timeout: float = 180.0, node: str | None = None, lease: float = 30.0,
                 live_listen: bool = False) -> None:
        self.conn, self.db, self.qconf = conn, db, qconf
        # speech.live_listen: the dialplan forks the callback's audio for live partials; its
        # citizen's spy listens on the queued Local half (;2), so that half must stay in the
        # call (/n: no optimizing it away once the citizen answers)
        self.local_options = "/n" if live_listen else ""
        # Who dials (written on the request while it is dialled) and for how long a silent
        # dialer keeps it before another node takes it over (bus.claim_after_seconds).
        self.node = node or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = lease
        self.context, self.caller_id = context, caller_id
        self.trunk_problem = trunk_problem(trunk_contact)
        self.poll = poll
        # after OriginateResponse Success: how long the citizen's leg may take to be decided
        # (the dialplan's Dial rings 60 s)
        self.result_timeout = result_timeout
        self._dialing: set[asyncio.Task[None]] = set()
        self._watches: dict[str, _Watch] = {}

    def policy(self, queue: str) -> CallbackPolicy:
        if queue in self.qconf.queues:
            return self.qconf.setting(queue, "callback")  # type: ignore[return-value]
        return self.qconf.defaults.callback

    # -- events of the calls being dialled (fed by the bridge's ingest loop) --
    def wants(self, name: str, raw: str) -> bool:
        """Whether an event the ingester skips must still be parsed for a call being dialled."""
        return name == "DialEnd" and bool(self._watches) and any(cid in raw for cid in self._watches)

    def observe(self, events: list[dict[str, str]]) -> None:
        if not self._watches:
            return
        for e in events:
            if isinstance(e, dict) and e.get("Event") in ("DialEnd", "Hangup"):
                watch = self._watches.get(e.get("Linkedid", ""))
                if watch is not None:
                    watch.events.put_nowait(e)

    # -- whose turn it is --
    async def due(self, now: datetime) -> list[CallbackRequest]:
        """The requests whose turn has come, at most one per queue."""
        async with self.db.session() as session:
            requests = list((await session.execute(
                select(CallbackRequest).where(CallbackRequest.status.in_(["waiting", "dialing"]))
                .order_by(CallbackRequest.requested_at, CallbackRequest.id)
            )).scalars())
            waiting = list((await session.execute(select(LiveCall).where(LiveCall.state == "queued"))).scalars())
            agents = list((await session.execute(select(AgentState).where(AgentState.state == "available"))).scalars())
        busy_queues = {r.queue for r in requests if r.status == "dialing"}
        chosen: list[CallbackRequest] = []
        for r in requests:
            if r.status != "waiting" or r.queue in busy_queues:
                continue
            if r.queue in self.qconf.queues and not self.qconf.is_open(r.queue, now):
                continue  # the line is closed: nobody may be called back now
            busy_queues.add(r.queue)  # later requests of this queue wait behind this one
            next_at = _aware(r.next_attempt_at)
            if next_at is not None and next_at > now:
                continue
            requested = _aware(r.requested_at)
            assert requested is not None
            ahead = [c for c in waiting if c.queue == r.queue and _aware(c.joined_at) < requested]  # type: ignore[operator]
            if ahead or not any(r.queue in (a.queues or {}) for a in agents):
                continue
            chosen.append(r)
        return chosen

    async def tick(self, now: datetime | None = None) -> list[int]:
        now = now or datetime.now(UTC)
        if self.trunk_problem is not None or not self.conn.logged_in.is_set():
            return []
        await self.take_over(now)
        started = []
        for r in await self.due(now):
            attempt = await self._mark_dialing(r.id, now)
            if attempt is None:
                continue
            task = asyncio.create_task(self._dial(r.id, attempt))
            self._dialing.add(task)
            task.add_done_callback(self._dialing.discard)
            started.append(r.id)
        return started

    async def _mark_dialing(self, request_id: int, now: datetime) -> int | None:
        """Take the request for one attempt: one conditional UPDATE, so of several dialers (one
        per dasan node) exactly one wins it. Returns the attempt's number, None if lost."""
        async with self.db.transaction() as session:
            won = (await session.execute(
                update(CallbackRequest)
                .where(CallbackRequest.id == request_id, CallbackRequest.status == "waiting")
                .values(status="dialing", attempts=CallbackRequest.attempts + 1, dialing_by=self.node,
                        dialing_until=now + timedelta(seconds=self.lease))
                .returning(CallbackRequest.attempts, CallbackRequest.contact_id, CallbackRequest.phone,
                           CallbackRequest.queue)
                .execution_options(synchronize_session=False))).first()
            if won is None:
                return None
            attempts, contact_id, phone, queue = won
            if contact_id is not None:
                await record_event(session, contact_id, "callback_attempt", "ami",
                                   external_id=f"callback:{request_id}:{attempts}",
                                   data={"attempt": attempts, "phone": phone, "queue": queue,
                                         "dialer": self.node}, at=now)
            return int(attempts)

    async def _renew(self, request_id: int, attempt: int) -> None:
        """Keep the lease of an attempt we are dialling (every third of it) so no other node
        takes it over while we wait for its result."""
        while True:
            await asyncio.sleep(max(0.2, self.lease / 3))
            with contextlib.suppress(Exception):  # the database is away: the next beat tries again
                async with self.db.transaction() as session:
                    await session.execute(
                        update(CallbackRequest)
                        .where(CallbackRequest.id == request_id, CallbackRequest.status == "dialing",
                               CallbackRequest.dialing_by == self.node, CallbackRequest.attempts == attempt)
                        .values(dialing_until=datetime.now(UTC) + timedelta(seconds=self.lease))
                        .execution_options(synchronize_session=False))

    # -- a dialer that stopped (its node died) --
    async def take_over(self, now: datetime) -> list[int]:
        """Requests left ``dialing`` by a dialer whose lease ran out: back to waiting (the call
        never reached Asterisk) or failed (it did: its result is unknown). Returns their ids."""
        async with self.db.session() as session:
            stale = list((await session.execute(
                select(CallbackRequest.id, CallbackRequest.attempts, CallbackRequest.dialing_by)
                .where(CallbackRequest.status == "dialing",
                       or_(CallbackRequest.dialing_until.is_(None), CallbackRequest.dialing_until < now))
                .order_by(CallbackRequest.id))).all())
        taken = []
        for request_id, attempt, owner in stale:
            if await self._take_over_one(int(request_id), int(attempt), owner, now):
                taken.append(int(request_id))
        return taken

    async def _placed(self, session: Any, channel_id: str) -> bool:
        """Whether Asterisk made the attempt's call: its callback leg is on the contact's timeline
        (the Originate's VarSet CONTACT_ID, ingested by any node's bridge) or it is live in a queue."""
        leg = (await session.execute(select(ContactEvent.id).where(
            ContactEvent.external_id == f"{CALLBACK_LEG}{channel_id}"[:200]).limit(1))).first()
        live = (await session.execute(select(LiveCall.linkedid).where(LiveCall.linkedid == channel_id))).first()
        return leg is not None or live is not None

    async def _take_over_one(self, request_id: int, attempt: int, owner: str | None, now: datetime) -> bool:
        async with self.db.transaction() as session:
            r = await session.get(CallbackRequest, request_id)
            if r is None:
                return False
            placed = await self._placed(session, f"callback-{request_id}-{attempt}")
            policy = self.policy(r.queue)
            if placed:
                status = "failed"
                reason = (f"dialer {owner or '?'} stopped during attempt {attempt} after Asterisk placed the call: "
                          "its result is unknown, so it is not dialled again (see the timeline) / 통화 결과를 "
                          "알 수 없어 다시 걸지 않습니다")
            else:
                status = "waiting" if attempt < policy.max_attempts else "failed"
                reason = (f"dialer {owner or '?'} stopped during attempt {attempt} before Asterisk placed the "
                          "call: nobody was called / 발신 전에 중단되었습니다")
            result = f"lost_with_node: {reason}"[:200]
            # Only if nobody (the owner renewing late, another survivor) changed it meanwhile.
            won = await session.execute(
                update(CallbackRequest)
                .where(CallbackRequest.id == request_id, CallbackRequest.status == "dialing",
                       CallbackRequest.attempts == attempt,
                       or_(CallbackRequest.dialing_until.is_(None), CallbackRequest.dialing_until < now))
                .values(status=status, dialing_by=None, dialing_until=None, last_result=result,
                        next_attempt_at=now if status == "waiting" else None)
                .execution_options(synchronize_session=False))
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if r.contact_id is not None:
                await record_event(session, r.contact_id, "callback_result", "ami",
                                   external_id=f"callback:{request_id}:{attempt}:result",
                                   data={"attempt": attempt, "result": "lost_with_node", "reason": reason,
                                         "dial_status": None, "cause": None, "status": status,
                                         "dialer": owner, "taken_over_by": self.node}, at=now)
        log.warning("callback %s attempt %s taken over from %s: %s", request_id, attempt, owner, result)
        return True

    # -- one attempt --
    async def _dial(self, request_id: int, attempt: int) -> None:
        async with self.db.session() as session:
            r = await session.get(CallbackRequest, request_id)
            contact = await session.get(Contact, r.contact_id) if r is not None and r.contact_id else None
        assert r is not None
        # The callback belongs to the original contact and citizen: the ingester reads these
        # from the Originate's VarSet events and files the call's events under that contact.
        variables = [f"{Var.CALLBACK_ID}={r.id}", f"{Var.QUEUE}={r.queue}", f"{Var.LANG}={r.language}"]
        if contact is not None:
            variables.append(f"{Var.CONTACT_ID}={contact.id}")
            if contact.citizen_id is not None:
                variables.append(f"{Var.CITIZEN_ID}={contact.citizen_id}")
        channel_id = f"callback-{r.id}-{attempt}"
        ring = self.policy(r.queue).ring_seconds
        action: dict[str, Any] = {
            "Action": "Originate", "Channel": f"Local/{r.queue}@{self.context}{self.local_options}",
            "Context": f"{self.context}-out", "Exten": dial_number(r.phone) or r.phone,
            "Priority": "1", "Async": "true", "Timeout": str(ring * 1000),
            "CallerID": self.caller_id, "ChannelId": channel_id, "Variable": variables,
        }
        watch = self._watches[channel_id] = _Watch(channel_id)
        lease = asyncio.create_task(self._renew(request_id, attempt))
        try:
            outcome = await self._attempt(action, watch, ring)
        except Exception as exc:  # timeout, disconnect: the attempt failed, the request stays
            outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._watches.pop(channel_id, None)
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease
        await self._finish(request_id, attempt, outcome)

    async def _attempt(self, action: dict[str, Any], watch: _Watch, ring: int) -> Outcome:
        reply = await self.conn.send(action, timeout=ring + 15)
        messages = reply if isinstance(reply, list) else [reply]
        final = messages[-1]
        if final.get("Event") != "OriginateResponse" or final.get("Response") != "Success":
            # ;1 was never answered: no counsellor took the call (or Asterisk refused it)
            return Outcome("no_agent", str(final.get("Message") or f"no counsellor answered (Reason {final.get('Reason', '?')})"))
        return await self._citizen_leg(watch)

    async def _citizen_leg(self, watch: _Watch) -> Outcome:
        """What became of the Dial on ;1: its DialEnd (with the trunk leg's Hangup cause), or ;1
        hanging up without one. Stasis keeps order per channel only, so the trunk leg's Hangup,
        ;1's Hangup and the DialEnd may come in any order: each waits a little for the others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.result_timeout
        dial_end: dict[str, str] | None = None
        hangups: dict[str, dict[str, str]] = {}  # Uniqueid -> Hangup
        while True:
            left = deadline - loop.time()
            if left <= 0:
                if dial_end is not None:
                    return _outcome(dial_end, hangups.get(dial_end.get("DestUniqueid", "")))
                own = hangups.get(watch.channel_id)
                if own is not None:
                    return Outcome("failed", f"hung up before dialling: cause {own.get('Cause', '?')} "
                                   f"({own.get('Cause-txt', '')})", cause=own.get("Cause"))
                return Outcome("failed", f"no dial result within {self.result_timeout:.0f} s")
            try:
                e = await asyncio.wait_for(watch.events.get(), left)
            except TimeoutError:
                continue
            uniqueid = e.get("Uniqueid", "")
            if e.get("Event") == "DialEnd" and uniqueid == watch.channel_id:
                dial_end = e
                cause = hangups.get(e.get("DestUniqueid", ""))
                if e.get("DialStatus") == "ANSWER" or cause is not None:
                    return _outcome(e, cause)
                deadline = min(deadline, loop.time() + CAUSE_WAIT)  # the trunk leg's Hangup follows
            elif e.get("Event") == "Hangup":
                hangups[uniqueid] = e
                if dial_end is not None and uniqueid == dial_end.get("DestUniqueid"):
                    return _outcome(dial_end, e)
                if uniqueid == watch.channel_id:
                    deadline = min(deadline, loop.time() + CAUSE_WAIT)  # ;1 is gone: what is left comes now

    async def _finish(self, request_id: int, attempt: int, outcome: Outcome) -> None:
        now = datetime.now(UTC)
        result, reason = outcome.result, outcome.reason
        async with self.db.transaction() as session:
            r = await session.get(CallbackRequest, request_id, with_for_update=True)
            if r is None:
                return
            if (r.status, r.dialing_by, r.attempts) != ("dialing", self.node, attempt):
                # Another node took the attempt over while we were away (our lease ran out):
                # it has recorded the attempt's end; ours is not recorded twice.
                log.warning("callback %s attempt %s: taken over by another dialer meanwhile; result %s dropped",
                            request_id, attempt, result)
                return
            r.dialing_by, r.dialing_until = None, None
            policy = self.policy(r.queue)
            if result == "answered":
                r.status = "done"
                r.next_attempt_at = None
            elif r.attempts >= policy.max_attempts:
                r.status = "failed"
            else:
                r.status = "waiting"
                delay = policy.retry_seconds[min(r.attempts - 1, len(policy.retry_seconds) - 1)]
                r.next_attempt_at = now + timedelta(seconds=delay)
            r.last_result = (result if not reason else f"{result}: {reason}")[:200]
            if r.contact_id is not None:
                await record_event(session, r.contact_id, "callback_result", "ami",
                                   external_id=f"callback:{r.id}:{attempt}:result",
                                   data={"attempt": attempt, "result": result, "reason": reason,
                                         "dial_status": outcome.dial_status, "cause": outcome.cause,
                                         "status": r.status}, at=now)
        log.info("callback %s attempt %s: %s %s", request_id, attempt, result, reason)

    async def run(self) -> None:
        if self.trunk_problem is not None:
            log.error("%s", self.trunk_problem)
            return
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("callback dialer")
            await asyncio.sleep(self.poll)

    async def drain(self) -> None:
        for task in list(self._dialing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _outcome(dial_end: dict[str, str], hangup: dict[str, str] | None) -> Outcome:
    status = dial_end.get("DialStatus", "")
    result = DIAL_RESULTS.get(status, "failed")
    if result == "answered":
        return Outcome(result, "", status)
    reason = f"DialStatus {status or '?'}"
    cause = hangup.get("Cause") if hangup is not None else None
    if hangup is not None:
        reason += f", cause {cause} ({hangup.get('Cause-txt', '')})"
    return Outcome(result, reason, status, cause)
