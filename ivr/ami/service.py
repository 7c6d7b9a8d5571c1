"""The ``ami`` service: keeps the AMI session, ingests events, runs agent commands and callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from ivr.ami.agents import AgentCommandError, AgentControl, sync_agents
from ivr.ami.callbacks import CallbackDialer
from ivr.ami.connection import AmiConnection
from ivr.ami.ingest import (
    Effects,
    Ingester,
    Snapshot,
    apply_member_snapshot,
    apply_snapshot,
    wanted_event,
)
from ivr.ami.metrics import current_metrics
from ivr.ami.models import OutboxJob
from ivr.ami.supervise import ModeSwitch, SpyModes, audit_switch
from ivr.bus import Job
from ivr.config import AsteriskNode
from ivr.context import AppContext
from ivr.contracts import Stream, Topic
from ivr.db import conflicts
from ivr.db.conflicts import ConflictCounters, conflict_of
from ivr.observe import AMI_COMMIT_BATCH
from ivr.queues import QueueConfig, load_queues
from ivr.yamlfile import DataError

log = logging.getLogger("dasan.ami")

BATCH = 5000
COMMANDS_GROUP = "ami-bridge"
APPLY_RETRY_SECONDS = 30.0  # a job whose apply failed is taken up again this long after
APPLY_TRIES = 20  # then it is logged and dropped (the YAML stays written; `dasan asterisk apply` retries)
RESYNC_RETRY_MIN, RESYNC_RETRY_MAX = 0.5, 5.0  # seconds between resync tries on one connection
OUTBOX_BATCH = 500  # jobs marked as sent per transaction
STATUS_POLL, STATUS_EVERY = 0.5, 5.0  # seconds: live.ami checks the session / sends a heartbeat


class _Resync:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


class _AgentCheck:
    """Re-derive agent states in order with the events: wrap-ups that ended, and (``members``)
    QueueStatus's view of the members."""

    def __init__(self, members: list[dict[str, str]] | None) -> None:
        self.members = members


class AmiBridge:
    def __init__(self, ctx: AppContext, qconf: QueueConfig | None = None, metrics_interval: float = 0.5,
                 callbacks: bool = True, batch: int = BATCH, node: AsteriskNode | None = None,
                 primary: bool = True) -> None:
        self.ctx = ctx
        self.batch = batch  # most events per transaction (1: one commit per event)
        s = ctx.settings.ami
        self.qconf = qconf or _queues_or_empty(ctx)
        # One node of a cluster (docs/cluster.md): its AMI address, and the start of its calls'
        # ids (its systemname), so its resync never takes another node's calls for gone.
        host, port = (node.ami_host, node.ami_port) if node is not None else (s.host, s.port)
        self.scope = f"{node.name}-" if node is not None else ""
        # The primary bridge alone runs agent commands (sent to every node), callbacks, apply,
        # metrics and the live.ami status; every bridge ingests and resyncs its own node.
        self.primary = primary
        self.others: list[AmiBridge] = []
        self.conn = AmiConnection(host, port, s.username, s.secret, on_login=self._on_login,
                                  reconnect_max=s.reconnect_max_seconds, keep=self._keep)
        wrapup = {name: int(self.qconf.setting(name, "wrapup_seconds")) for name in self.qconf.queues}  # type: ignore[call-overload]
        self.ingester = Ingester(ctx.settings.recordings.dir, wrapup, self.qconf.defaults.wrapup_seconds)
        self.control = AgentControl(self.conn, ctx.db, self.qconf)
        self.dialer = (CallbackDialer(self.conn, ctx.db, self.qconf, ctx.settings.asterisk.trunk_contact,
                                      lease=ctx.settings.bus.claim_after_seconds,
                                      live_listen=bool(ctx.settings.speech.live_listen))
                       if callbacks else None)
        self.spies = SpyModes(self.qconf.agents)  # supervisors' mode keys during ChanSpy
        self.metrics_interval = metrics_interval
        self.applied = 0  # events taken off the socket and committed
        self.resyncs = 0
        self.batches = 0  # transactions committed for events
        self.conflicts = ConflictCounters()  # deadlocks / serialization failures met (ivr.db.conflicts)
        self._tasks: list[asyncio.Task[Any]] = []
        self._busy = False
        self._metrics_due = asyncio.Event()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._outbox: deque[tuple[str, dict[str, Any], int]] = deque()
        self._outbox_due = asyncio.Event()
        self._publish_failures = 0
        self._wrapup_timer: asyncio.TimerHandle | None = None

    async def start(self) -> list[str]:
        if self.primary:
            await sync_agents(self.ctx.db, self.qconf)
        self.conn.start()
        spawn = self._tasks.append
        if self.primary:
            await self._load_outbox()
        spawn(asyncio.create_task(self._ingest_loop(), name="ami-ingest"))
        spawn(asyncio.create_task(self._outbox_loop(), name="ami-outbox"))
        spawn(asyncio.create_task(self._reconcile_loop(), name="ami-reconcile"))
        if self.primary:
            spawn(asyncio.create_task(self._metrics_loop(), name="ami-metrics"))
            spawn(asyncio.create_task(self._commands_loop(), name="ami-commands"))
            spawn(asyncio.create_task(self._apply_loop(), name="ami-apply"))
            spawn(asyncio.create_task(self._status_loop(), name="ami-status"))
        self._check_agents()  # wrap-ups left from before a restart
        lines = [f"{self.conn.address} (connecting)"]
        if self.dialer is not None:
            spawn(asyncio.create_task(self.dialer.run(), name="ami-callbacks"))
            if self.dialer.trunk_problem is not None:
                lines.append(self.dialer.trunk_problem)
        return lines

    def _keep(self, name: str, raw: str) -> bool:
        """Events to parse: what the ingester reads, the dial results of callbacks, and the keys
        supervisors press during ChanSpy."""
        return (wanted_event(name, raw) or (self.dialer is not None and self.dialer.wants(name, raw))
                or self.spies.wants(name, raw))

    async def stop(self) -> None:
        await self.wait_idle(timeout=5, outbox=False)  # unsent jobs stay in the DB outbox
        if self._wrapup_timer is not None:
            self._wrapup_timer.cancel()
        for task in [*self._tasks, *self._side_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._side_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.dialer is not None:
            await self.dialer.drain()
        await self.conn.close()

    # -- (re)connect: resync --
    def _on_login(self) -> Awaitable[None]:
        return self._resync()

    async def _resync(self) -> None:
        # Asterisk takes logins while it is still loading modules: right after a restart
        # QueueStatus can be an unknown command for a moment. Retry on this connection (a new
        # login starts its own resync).
        connection, delay = self.conn.connects, RESYNC_RETRY_MIN
        while True:
            try:
                status = await self.conn.send_list({"Action": "QueueStatus"}, timeout=30)
                taken = datetime.now(UTC)
                channels = await self.conn.send_list({"Action": "CoreShowChannels"}, timeout=30)
                break
            except Exception as exc:
                if self.conn.connects != connection or self.conn.state != "connected":
                    log.warning("AMI resync failed: %s", exc)
                    return
                log.warning("AMI resync failed: %s; trying again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESYNC_RETRY_MAX)
        snap = Snapshot(
            members=[e for e in status if e.get("Event") == "QueueMember"],
            entries=[e for e in status if e.get("Event") == "QueueEntry"],
            channels=[e for e in channels if e.get("Event") == "CoreShowChannel"],
            taken_at=taken,
        )
        # In the event queue, so it is applied in order with the events around it.
        self.conn.events.append(_Resync(snap))  # type: ignore[arg-type]
        self.conn.has_events.set()
        self._spawn(self._restore())

    async def _restore(self) -> None:
        try:
            await self.control.restore()
        except Exception as exc:
            log.warning("agent membership restore failed: %s", exc)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- ingest --
    async def _ingest_loop(self) -> None:
        while True:
            await self.conn.has_events.wait()
            self._busy = True
            try:
                # Group commit: let a burst pile up a little (<= ~10 ms) so one fsync covers many events.
                for _ in range(5):
                    before = len(self.conn.events)
                    if before >= self.batch:
                        break
                    await asyncio.sleep(0.002)
                    if len(self.conn.events) == before:
                        break
                items: list[Any] = self.conn.take(self.batch)
                if self.dialer is not None:
                    self.dialer.observe(items)
                for switch in self.spies.observe(items):
                    await self._mode_switched(switch)
                events: list[dict[str, str]] = []
                for item in items:
                    if isinstance(item, _Resync):
                        await self._commit(events)
                        events = []
                        await self._commit_snapshot(item.snapshot)
                    elif isinstance(item, _AgentCheck):
                        await self._commit(events)
                        events = []
                        await self._commit_agents(item.members)
                    else:
                        events.append(item)
                await self._commit(events)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die; the failing batch was logged
                log.exception("AMI ingest loop")
            finally:
                self._busy = False

    async def _mode_switched(self, switch: ModeSwitch) -> None:
        """Audited in order with the keys (a quick 5 then 6 are two rows in that order), then
        told to the supervisor's wallboard on live.supervise."""
        try:
            outcome = await audit_switch(self.ctx.db, switch)
        except Exception:
            log.exception("auditing the supervise mode switch %s", switch)
            return
        with contextlib.suppress(Exception):
            await self.ctx.bus.publish(Topic.LIVE_SUPERVISE, outcome)

    async def _with_retry(self, what: str, fn: Callable[[], Awaitable[Effects]]) -> Effects | None:
        """``fn`` (one transaction) until it commits: a deadlock or serialization failure is run
        again at once after a short random pause (``ivr.db.conflicts``), any other failure up
        to 6 times with a growing pause."""
        delay, failures, races = 0.2, 0, 0
        while failures < 6:
            try:
                return await fn()
            except Exception as exc:
                kind = conflict_of(exc)
                if kind is not None:
                    self.conflicts.seen += 1
                    if races < conflicts.RETRIES:
                        races += 1
                        self.conflicts.retried += 1
                        log.warning("%s: %s; running it again (try %d of %d)", what, kind, races, conflicts.RETRIES)
                        await asyncio.sleep(conflicts.pause(races))
                        continue
                failures += 1
                log.exception("%s failed (attempt %d); retrying", what, failures)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
        return None

    async def _commit(self, events: list[dict[str, str]]) -> None:
        if not events:
            return
        self.batches += 1
        AMI_COMMIT_BATCH.observe(len(events))

        async def run(batch: list[dict[str, str]]) -> Effects:
            async with self.ctx.db.transaction() as session:
                return await self.ingester.apply(session, batch, datetime.now(UTC))

        effects = await self._with_retry("AMI batch", lambda: run(events))
        if effects is None:
            # A batch that keeps failing: apply event by event so one bad event loses only itself.
            for event in events:
                try:
                    await self._after(await run([event]))
                except Exception as exc:
                    if conflict_of(exc) is not None:
                        self.conflicts.lost += 1
                    log.exception("AMI event skipped: %r", event)
        else:
            await self._after(effects)
        self.applied += len(events)

    async def _commit_snapshot(self, snap: Snapshot) -> None:
        async def run() -> Effects:
            async with self.ctx.db.transaction() as session:
                return await apply_snapshot(self.ingester, session, snap, scope=self.scope)

        effects = await self._with_retry("AMI resync", run)
        if effects is not None:
            await self._after(effects)
        self.resyncs += 1

    async def _commit_agents(self, members: list[dict[str, str]] | None) -> None:
        async def run() -> Effects:
            now = datetime.now(UTC)
            async with self.ctx.db.transaction() as session:
                effects = Effects()
                if members is not None:
                    await apply_member_snapshot(self.ingester, session, members, now, effects)
                    await session.flush()
                expired = await self.ingester.expire_wrapups(session, now)
            effects.publish += expired.publish
            effects.wrapup_ends = expired.wrapup_ends
            effects.changed = effects.changed or expired.changed
            return effects

        effects = await self._with_retry("AMI agent check", run)
        if effects is not None:
            await self._after(effects)

    def _check_agents(self, members: list[dict[str, str]] | None = None) -> None:
        self.conn.events.append(_AgentCheck(members))  # type: ignore[arg-type]
        self.conn.has_events.set()

    def _check_agents_at(self, when: datetime) -> None:
        """A timer for the end of the earliest wrap-up (one timer for all agents)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.0, (when - datetime.now(UTC)).total_seconds()) + 0.05
        timer = self._wrapup_timer
        if timer is not None and not timer.cancelled() and timer.when() <= at:
            return
        if timer is not None:
            timer.cancel()

        def fire() -> None:
            self._wrapup_timer = None
            self._check_agents()

        self._wrapup_timer = loop.call_at(at, fire)

    async def _reconcile_loop(self) -> None:
        """QueueStatus now and then: a member event Asterisk never sent (or we missed) must not
        leave an agent's state wrong until the next reconnect."""
        interval = self.ctx.settings.ami.reconcile_seconds
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            if not self.conn.logged_in.is_set():
                continue
            try:
                status = await self.conn.send_list({"Action": "QueueStatus"}, timeout=30)
            except Exception as exc:
                log.warning("agent state check (QueueStatus) failed: %s", exc)
                continue
            self._check_agents([e for e in status if e.get("Event") == "QueueMember"])

    async def _after(self, effects: Effects) -> None:
        """After the commit: bus messages and jobs (never before the data is durable).

        Jobs go through the outbox (retried until the bus takes them, even across a restart);
        live messages are best effort: a bus outage must not stop the recording of calls.
        """
        if effects.enqueue:
            self._outbox.extend(effects.enqueue)
            self._outbox_due.set()
        for topic, message in effects.publish:
            try:
                await self.ctx.bus.publish(topic, message)
            except Exception as exc:
                self._publish_failures += 1
                if self._publish_failures in (1, 10, 100) or self._publish_failures % 1000 == 0:
                    log.warning("live %s not published (%d so far): %s", topic, self._publish_failures, exc)
        if effects.reload_seen:
            self._spawn(self._restore())
        if effects.wrapup_ends:
            self._check_agents_at(min(effects.wrapup_ends))
        if effects.changed:
            self._metrics_due.set()

    # -- outbox: recordings.finished jobs, durable in ami_outbox until the bus has them --
    async def _load_outbox(self) -> None:
        async with self.ctx.db.session() as session:
            rows = await session.execute(select(OutboxJob.stream, OutboxJob.job, OutboxJob.id).order_by(OutboxJob.id))
            self._outbox.extend((str(stream), dict(job), int(job_id)) for stream, job, job_id in rows)
        if self._outbox:
            log.info("%d recordings.finished job(s) left from before; sending", len(self._outbox))
            self._outbox_due.set()

    async def _outbox_loop(self) -> None:
        delay = 0.2
        while True:
            await self._outbox_due.wait()
            while self._outbox:
                # Send from the head, then mark what the bus took in one transaction (not one
                # commit per job); entries leave the deque only once marked, so wait_idle()
                # covers the marking too. Other tasks only append, so indices stay valid.
                sent = 0
                while sent < min(len(self._outbox), OUTBOX_BATCH):
                    stream, job, _ = self._outbox[sent]
                    try:
                        await self.ctx.bus.enqueue(stream, job)
                    except (Exception, asyncio.CancelledError) as exc:
                        task = asyncio.current_task()
                        if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                            raise  # we are being stopped; the job stays in the DB outbox
                        # (a client library may raise CancelledError on a dropped connection)
                        log.warning("%s job for %s waits for the bus: %s", stream, job.get("call_id"), exc)
                        break
                    sent += 1
                if sent:
                    delay = 0.2
                    await self._mark_sent([self._outbox[i] for i in range(sent)])
                    for _ in range(sent):
                        self._outbox.popleft()
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)  # a job waits at most ~1 s after the bus is back
            self._outbox_due.clear()

    async def _mark_sent(self, entries: list[tuple[str, dict[str, Any], int]]) -> None:
        ids = sorted(job_id for _, _, job_id in entries)
        try:
            async with self.ctx.db.transaction() as session:
                await session.execute(delete(OutboxJob).where(OutboxJob.id.in_(ids)))
        except Exception:
            # The jobs are on the bus; at worst they are sent again after a restart.
            log.exception("marking %d job(s) as sent", len(entries))

    async def wait_idle(self, timeout: float = 30, outbox: bool = True) -> bool:
        """True once every received event is committed and (``outbox``) every job sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.conn.events and not self._busy and not (outbox and self._outbox):
                return True
            await asyncio.sleep(0.01)
        return False

    # -- live.ami: is Asterisk reachable? (consoles say so plainly when it is not) --
    async def _status_loop(self) -> None:
        """The AMI session's state on ``live.ami``: at once when it changes, else every
        ``STATUS_EVERY`` s as a heartbeat (a console that hears nothing for a while knows the
        bridge itself is gone)."""
        last: tuple[str, bool] | None = None
        quiet = 0.0
        while True:
            now = (self.conn.state, self.conn.logged_in.is_set())
            if now != last or quiet >= STATUS_EVERY:
                with contextlib.suppress(Exception):  # the bus may be down too; next round
                    await self.ctx.bus.publish(Topic.LIVE_AMI, ami_status(self.conn.state, now[1]))
                last, quiet = now, 0.0
            await asyncio.sleep(STATUS_POLL)
            quiet += STATUS_POLL

    # -- live metrics --
    async def _metrics_loop(self) -> None:
        while True:
            await self._metrics_due.wait()
            self._metrics_due.clear()
            try:
                await self.ctx.bus.publish(Topic.LIVE_METRICS, await current_metrics(self.ctx))
            except Exception:
                log.exception("publishing live.metrics")
            await asyncio.sleep(self.metrics_interval)  # at most ~2 per second

    # -- agent.commands from the web console --
    async def _commands_loop(self) -> None:
        consumer = f"ami-{id(self)}"
        while True:
            try:
                jobs = await self.ctx.bus.consume(Stream.AGENT_COMMANDS, COMMANDS_GROUP, consumer, count=10, block=1.0)
                stale = await self.ctx.bus.claim_stale(Stream.AGENT_COMMANDS, COMMANDS_GROUP, consumer, min_idle=60)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading agent.commands")
                await asyncio.sleep(1)
                continue
            for job in [*jobs, *stale]:
                if job.data.get("action") == "supervise":
                    # Rings a phone for up to RING_SECONDS: on its own, so agents' commands do
                    # not wait behind it; never retried (a listen-in is wanted now or not at all).
                    self._spawn(self._supervise(job.data))
                    await self.ctx.bus.ack(job, COMMANDS_GROUP)
                    continue
                try:
                    result = await self.control.run(job.data)
                    log.info("agent command %s: %s", job.data, result.message)
                    await self._on_other_nodes(job.data)
                except AgentCommandError as exc:
                    retry = "not reachable" in str(exc) and job.deliveries < 5
                    if job.deliveries == 1:  # the agent learns why at once, and that it is retried
                        await self.ctx.bus.publish(Topic.LIVE_AGENTS, {**job.data, "error": str(exc), "retrying": retry})
                    if retry:
                        continue  # not acked: redelivered (claim_stale) once Asterisk is back
                    log.warning("agent command %s refused: %s", job.data, exc)
                    if job.deliveries > 1:
                        await self.ctx.bus.publish(Topic.LIVE_AGENTS, {**job.data, "error": str(exc), "retrying": False})
                await self.ctx.bus.ack(job, COMMANDS_GROUP)

    async def _on_other_nodes(self, command: dict[str, Any]) -> None:
        """A cluster: the agent's queue membership is the same on every node. A node away now
        gets it from the database when its bridge logs in again (``_restore``)."""
        for other in self.others:
            try:
                await other.control.run(command)
            except Exception as exc:
                log.warning("agent command %s on %s: %s (applied when it is back)", command,
                            other.conn.address, exc)

    async def _supervise(self, command: dict[str, Any]) -> None:
        """One listen-in (ivr.ami.supervise); its outcome goes to the supervisor on live.supervise."""
        try:
            result = await self.control.run(command)
            log.info("supervise %s: %s", command, result.message)
            outcome: dict[str, Any] = {**command, "message": result.message}
        except Exception as exc:  # refused, not answered, Asterisk away: said to the supervisor
            log.warning("supervise %s failed: %s", command, exc)
            outcome = {**command, "error": str(exc) or type(exc).__name__}
        with contextlib.suppress(Exception):
            await self.ctx.bus.publish(Topic.LIVE_SUPERVISE, outcome)


    # -- asterisk.apply: changes saved while Asterisk could not be reached --
    async def _apply_loop(self) -> None:
        from ivr.asterisk.apply import APPLY_STREAM

        await self.ctx.bus.serve(APPLY_STREAM, COMMANDS_GROUP, f"ami-apply-{id(self)}", self._apply_job,
                                 lambda: False, APPLY_RETRY_SECONDS, count=1)

    async def _apply_job(self, job: Job) -> None:
        """Render and reload now. One apply takes in every change saved so far (the YAML is
        the source of truth), so the jobs queued behind it find nothing left to do."""
        from ivr.asterisk.apply import ApplyError, error_text
        from ivr.cluster.apply import apply_everywhere

        try:
            result = await apply_everywhere(self.ctx.settings)  # the one Asterisk, or every cluster node
            problem = result.failures
        except (ApplyError, OSError, DataError) as exc:
            problem = error_text(exc)
        if problem and job.deliveries < APPLY_TRIES:
            log.warning("asterisk.apply job %s (try %d) failed: %s; trying again in %.0f s",
                        job.id, job.deliveries, problem, APPLY_RETRY_SECONDS)
            return  # not acked: claimed again once stale
        if problem:
            log.error("asterisk.apply job %s dropped after %d tries: %s", job.id, job.deliveries, problem)
        else:
            log.info("asterisk.apply job %s (by %s): changed %s, reloaded %s", job.id,
                     job.data.get("requested_by", "?"), ", ".join(result.changed) or "-",
                     ", ".join(result.reloaded) or "-")
        await self.ctx.bus.ack(job, COMMANDS_GROUP)


def ami_status(state: str, connected: bool) -> dict[str, Any]:
    """One ``live.ami`` message (docs/console.md)."""
    return {"connected": connected, "state": state, "at": datetime.now(UTC).isoformat(),
            "every": STATUS_EVERY}


def _queues_or_empty(ctx: AppContext) -> QueueConfig:
    try:
        return load_queues(ctx.settings.queues_dir)
    except Exception as exc:  # the bridge still records calls; agents come back with the file
        log.error("queues config unusable (%s): no agents or queues known", exc)
        return QueueConfig(queues={})


class AmiService:
    """Registered as ``ami`` in ivr.services; never fails because Asterisk is absent."""

    name = "ami"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.bridge: AmiBridge | None = None
        self.bridges: list[AmiBridge] = []

    async def start(self) -> list[str]:
        if not self.ctx.settings.ami.enabled:
            return ["disabled (ami.enabled: false)"]
        nodes = self.ctx.settings.cluster.asterisk_nodes
        if not nodes:
            self.bridge = AmiBridge(self.ctx)
            self.bridges = [self.bridge]
            return await self.bridge.start()
        # a cluster: a connection per Asterisk node, each reconnecting and resyncing on its own
        self.bridges = [AmiBridge(self.ctx, node=n, primary=i == 0, callbacks=i == 0) for i, n in enumerate(nodes)]
        self.bridge = self.bridges[0]
        self.bridge.others = self.bridges[1:]
        lines = []
        for node, bridge in zip(nodes, self.bridges, strict=True):
            lines += [f"{node.name}: {line}" for line in await bridge.start()]
        return lines

    async def stop(self) -> None:
        for bridge in self.bridges:
            await bridge.stop()
