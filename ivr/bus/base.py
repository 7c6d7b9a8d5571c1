from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


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

    async def start(self) -> None:
        """Connect (no-op for in-process)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
