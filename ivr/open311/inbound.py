"""The ``open311`` service: consumes ``messages.inbound``; an SMS/MMS that clearly reports is
answered with a question, and the citizen's confirming reply files the service request
(the rules: ``ivr/open311/intake.py``); anything else is left to the agents.

A job is acked once its request is committed (or once it is clearly not a request). A job
whose handling failed (database away) stays pending and is claimed again; after
``MAX_DELIVERIES`` tries it is logged and dropped so one bad job cannot block the stream.
The message itself is already in the counselling database, so nothing a citizen sent is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import suppress

from ivr.bus import Job
from ivr.context import AppContext
from ivr.open311.formats import Open311Error
from ivr.open311.service import INBOUND_STREAM, Open311

log = logging.getLogger("dasan.open311")
GROUP = "open311"
MAX_DELIVERIES = 5
STALE_SECONDS = 60.0


class InboundConsumer:
    name = "open311"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.desk = Open311(ctx)
        self.consumer = f"open311-{socket.gethostname()}-{os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self.handled = 0
        self._progress = asyncio.Condition()
        self._stopping = False

    async def start(self) -> list[str]:
        self.desk.catalog  # noqa: B018  (a broken catalogue fails start-up, naming file:line)
        self.desk.intake_rules  # noqa: B018  (so do broken intake rules)
        self._task = asyncio.create_task(self.run(), name="open311-inbound")
        return [f"bus stream {INBOUND_STREAM} (group {GROUP})"]

    async def stop(self) -> None:
        # The flag as well as the cancel: redis-py can swallow a cancel that lands mid-command.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        await self.ctx.bus.serve(INBOUND_STREAM, GROUP, self.consumer, self.handle,
                                 lambda: self._stopping, STALE_SECONDS)

    async def handle(self, job: Job) -> None:
        try:
            sr = await self.desk.create_from_message(job.data, redelivered=job.deliveries > 1)
        except (Open311Error, KeyError, ValueError, TypeError) as exc:
            log.warning("inbound message %s is not a valid service request: %s", job.data.get("message_id"), exc)
        except Exception:
            if job.deliveries < MAX_DELIVERIES:
                log.exception("inbound message %s failed (try %d); will retry", job.data.get("message_id"),
                              job.deliveries)
                return
            log.exception("inbound message %s dropped after %d tries", job.data.get("message_id"), job.deliveries)
        else:
            if sr is not None:
                log.info("message %s -> service request %s", job.data.get("message_id"), sr.service_request_id)
        await self.ctx.bus.ack(job, GROUP)
        async with self._progress:
            self.handled += 1
            self._progress.notify_all()

    async def wait_handled(self, count: int) -> None:
        """Until ``count`` jobs were handled (acked) since start: for tests and draining."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.handled >= count)
