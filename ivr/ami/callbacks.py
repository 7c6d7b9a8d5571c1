"""Queue callback: the caller keeps a place in line and is dialled back when it is their turn.

A ``callback_requests`` row (written by the IVR) waits like a caller who joined the queue at
``requested_at``: its turn comes when nobody who joined that queue earlier is still waiting,
an agent of the queue is available and no other callback of the queue is being dialled.
Then the bridge sends an ``Originate``: the ``Local/<queue>@dasan-callback`` half runs
``Queue(<queue>)``, so the call is offered to an agent through the normal skills and
penalties; once the agent answers, the other half continues at ``<phone>@dasan-callback-out``,
which dials the citizen back. ``OriginateResponse`` Success ends the request; a failure is
retried after ``retry_delays`` until ``max_attempts``. Every attempt and its result go on the
contact's timeline (``callback_attempt`` / ``callback_result``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ivr.ami.connection import AmiConnection
from ivr.ami.models import AgentState, LiveCall
from ivr.db import Database
from ivr.db.models import CallbackRequest
from ivr.records import dial_number, record_event

log = logging.getLogger("dasan.ami.callbacks")


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class CallbackDialer:
    def __init__(self, conn: AmiConnection, db: Database, context: str = "dasan-callback",
                 caller_id: str = "120", retry_delays: tuple[float, ...] = (60, 300, 900), max_attempts: int = 3,
                 ring_timeout: float = 60.0, poll: float = 2.0) -> None:
        self.conn, self.db = conn, db
        self.context, self.caller_id = context, caller_id
        self.retry_delays, self.max_attempts = retry_delays, max_attempts
        self.ring_timeout, self.poll = ring_timeout, poll
        self._dialing: set[asyncio.Task[None]] = set()

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
        if not self.conn.logged_in.is_set():
            return []
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
        async with self.db.transaction() as session:
            r = await session.get(CallbackRequest, request_id, with_for_update=True)
            if r is None or r.status != "waiting":
                return None
            r.status = "dialing"
            r.attempts += 1
            if r.contact_id is not None:
                await record_event(session, r.contact_id, "callback_attempt", "ami",
                                   external_id=f"callback:{r.id}:{r.attempts}",
                                   data={"attempt": r.attempts, "phone": r.phone, "queue": r.queue}, at=now)
            return r.attempts

    async def _dial(self, request_id: int, attempt: int) -> None:
        async with self.db.session() as session:
            r = await session.get(CallbackRequest, request_id)
        assert r is not None
        variables = [f"CALLBACK_ID={r.id}", f"QUEUE={r.queue}", f"LANG={r.language}"]
        if r.contact_id is not None:
            variables.append(f"CONTACT_ID={r.contact_id}")
        action: dict[str, Any] = {
            "Action": "Originate", "Channel": f"Local/{r.queue}@{self.context}",
            "Context": f"{self.context}-out", "Exten": dial_number(r.phone) or r.phone,
            "Priority": "1", "Async": "true", "Timeout": str(int(self.ring_timeout * 1000)),
            "CallerID": self.caller_id, "ChannelId": f"callback-{r.id}-{attempt}", "Variable": variables,
        }
        result, reason = "failed", ""
        try:
            reply = await self.conn.send(action, timeout=self.ring_timeout + 15)
            messages = reply if isinstance(reply, list) else [reply]
            final = messages[-1]
            if final.get("Event") == "OriginateResponse" and final.get("Response") == "Success":
                result = "answered"
            else:
                reason = str(final.get("Message") or f"Reason {final.get('Reason', '?')}")
        except Exception as exc:  # timeout, disconnect: the attempt failed, the request stays
            reason = f"{type(exc).__name__}: {exc}"
        await self._finish(request_id, attempt, result, reason)

    async def _finish(self, request_id: int, attempt: int, result: str, reason: str) -> None:
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            r = await session.get(CallbackRequest, request_id, with_for_update=True)
            if r is None:
                return
            if result == "answered":
                r.status = "done"
                r.next_attempt_at = None
            elif r.attempts >= self.max_attempts:
                r.status = "failed"
            else:
                r.status = "waiting"
                delay = self.retry_delays[min(r.attempts - 1, len(self.retry_delays) - 1)]
                r.next_attempt_at = now + timedelta(seconds=delay)
            r.last_result = (result if not reason else f"{result}: {reason}")[:200]
            if r.contact_id is not None:
                await record_event(session, r.contact_id, "callback_result", "ami",
                                   external_id=f"callback:{r.id}:{attempt}:result",
                                   data={"attempt": attempt, "result": result, "reason": reason,
                                         "status": r.status}, at=now)
        log.info("callback %s attempt %s: %s %s", request_id, attempt, result, reason)

    async def run(self) -> None:
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
