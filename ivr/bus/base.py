from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("dasan.bus")


@dataclass
class Job:
    stream: str
    id: str
    data: dict[str, Any]
    # How many times this job has been handed out (1 on first delivery).
    deliveries: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Subscription(abc.ABC):
    """Messages published on one topic after the subscription was made."""

    @abc.abstractmethod
    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            message = await self.get()
            if message is not None:
                yield message

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Bus(abc.ABC):
    # -- live events: fan-out to every current subscriber, nothing kept --
    @abc.abstractmethod
    async def publish(self, topic: str, message: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> Subscription: ...

    # -- jobs: each job goes to one consumer of a group, and stays pending until acked --
    @abc.abstractmethod
    async def enqueue(self, stream: str, data: dict[str, Any]) -> str: ...

    @abc.abstractmethod
    async def consume(
        self, stream: str, group: str, consumer: str, count: int = 1, block: float = 1.0
    ) -> list[Job]:
        """New jobs for this consumer; waits up to ``block`` seconds when there are none."""

    @abc.abstractmethod
    async def ack(self, job: Job, group: str) -> None: ...

    @abc.abstractmethod
    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int = 10
    ) -> list[Job]:
        """Take over jobs another consumer was given but did not ack within ``min_idle`` s."""

    @abc.abstractmethod
    async def pending(self, stream: str, group: str) -> int:
        """How many jobs were handed out and not acked yet."""

    @abc.abstractmethod
    async def touch(self, job: Job, group: str, consumer: str) -> None:
        """Tell the group this consumer still works on ``job`` (resets its idle time), so a
        long job is not claimed by another consumer as stale."""

    async def dead_letter(self, job: Job, group: str, reason: str) -> str:
        """Move a job that cannot be done to ``<stream>.dead`` (with why, and how many times it
        was handed out), then ack it: it leaves the group's pending list for good. The entry is
        written before the ack, so a failure in between leaves the job pending, never lost."""
        entry = {"stream": job.stream, "group": group, "id": job.id, "deliveries": job.deliveries,
                 "reason": reason, "data": job.data}
        dead_id = await self.enqueue(dead_letter_stream(job.stream), entry)
        await self.ack(job, group)
        log.error("%s job %s moved to %s after %d deliveries: %s", job.stream, job.id,
                  dead_letter_stream(job.stream), job.deliveries, reason)
        return dead_id

    async def serve(
        self, stream: str, group: str, consumer: str, handle: Callable[[Job], Awaitable[None]],
        stopping: Callable[[], bool], stale_seconds: float, count: int = 10,
        max_deliveries: int | None = None,
    ) -> None:
        """A consumer's loop: jobs left stale by a dead consumer first, then new ones, each given
        to ``handle`` (which acks it), until ``stopping()``. A bus error waits a second and goes
        on; so does a job whose handling or ack raised: it stays pending and is claimed again.
        A job not handed over because the consumer is stopping is redelivered to the next one.
        With ``max_deliveries``, a job handed out more often than that goes to the dead-letter
        stream instead (None: retried for as long as it takes, e.g. a gateway that is away)."""
        failures: dict[str, str] = {}  # job id -> the last error this consumer saw
        while not stopping():
            try:
                jobs = await self.claim_stale(stream, group, consumer, stale_seconds)
                jobs += await self.consume(stream, group, consumer, count=count, block=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading %s failed; retrying", stream)
                await asyncio.sleep(1.0)
                continue
            for job in jobs:
                if stopping():
                    return
                try:
                    if max_deliveries is not None and job.deliveries > max_deliveries:
                        await self.dead_letter(job, group, undeliverable(job, failures.pop(job.id, None)))
                        continue
                    await handle(job)
                    failures.pop(job.id, None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the ack failed (bus away): claimed again later, handled once
                    failures[job.id] = f"{type(exc).__name__}: {exc}"[:500]
                    log.exception("%s job %s not acknowledged; it will be claimed again", stream, job.id)
                    await asyncio.sleep(1.0)

    async def start(self) -> None:
        """Connect (no-op for in-process)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


def dead_letter_stream(stream: str) -> str:
    """Where the jobs of ``stream`` that could not be done are kept (``Bus.dead_letter``)."""
    return f"{stream}.dead"


def undeliverable(job: Job, last_error: str | None) -> str:
    """The reason a job goes to the dead-letter stream."""
    why = (f"last error: {last_error}" if last_error else
           "no error was seen by this consumer: the consumers it was given to stopped or died during it")
    return f"handed out {job.deliveries} times without being acknowledged; {why}"
