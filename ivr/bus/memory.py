"""In-process bus: for one process running every service (``dasan up``)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from ivr.bus.base import Bus, Job, Subscription


class _MemorySubscription(Subscription):
    def __init__(self, bus: MemoryBus, topic: str) -> None:
        self._bus, self._topic = bus, topic
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def close(self) -> None:
        self._bus._subscribers.get(self._topic, set()).discard(self)


@dataclass
class _Pending:
    consumer: str
    since: float
    deliveries: int


@dataclass
class _Group:
    next_index: int = 0
    pending: dict[str, _Pending] = field(default_factory=dict)


@dataclass
class _Stream:
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryBus(Bus):
    def __init__(self) -> None:
        self._subscribers: dict[str, set[_MemorySubscription]] = {}
        self._streams: dict[str, _Stream] = {}
        self._ids = itertools.count(1)

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        for sub in list(self._subscribers.get(topic, ())):
            if sub.queue.full():  # a stuck subscriber loses its oldest message, not the bus
                sub.queue.get_nowait()
            sub.queue.put_nowait(message)

    async def subscribe(self, topic: str) -> Subscription:
        sub = _MemorySubscription(self, topic)
        self._subscribers.setdefault(topic, set()).add(sub)
        return sub

    def _stream(self, name: str) -> _Stream:
        return self._streams.setdefault(name, _Stream())

    async def enqueue(self, stream: str, data: dict[str, Any]) -> str:
        s = self._stream(stream)
        job_id = f"{int(time.time() * 1000)}-{next(self._ids)}"
        s.entries.append((job_id, data))
        s.by_id[job_id] = data
        s.changed.set()
        return job_id

    async def consume(
        self, stream: str, group: str, consumer: str, count: int = 1, block: float = 1.0
    ) -> list[Job]:
        s = self._stream(stream)
        g = s.groups.setdefault(group, _Group())
        deadline = time.monotonic() + block
        while g.next_index >= len(s.entries):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            s.changed.clear()
            try:
                await asyncio.wait_for(s.changed.wait(), remaining)
            except TimeoutError:
                return []
        jobs: list[Job] = []
        for job_id, data in s.entries[g.next_index : g.next_index + count]:
            g.pending[job_id] = _Pending(consumer, time.monotonic(), 1)
            jobs.append(Job(stream, job_id, data, 1))
        g.next_index += len(jobs)
        return jobs

    async def ack(self, job: Job, group: str) -> None:
        self._stream(job.stream).groups.setdefault(group, _Group()).pending.pop(job.id, None)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int = 10
    ) -> list[Job]:
        s = self._stream(stream)
        g = s.groups.setdefault(group, _Group())
        now = time.monotonic()
        jobs: list[Job] = []
        for job_id, p in list(g.pending.items()):
            if len(jobs) >= count:
                break
            if now - p.since >= min_idle:
                p.consumer, p.since, p.deliveries = consumer, now, p.deliveries + 1
                jobs.append(Job(stream, job_id, s.by_id[job_id], p.deliveries))
        return jobs

    async def touch(self, job: Job, group: str, consumer: str) -> None:
        entry = self._stream(job.stream).groups.setdefault(group, _Group()).pending.get(job.id)
        if entry is not None and entry.consumer == consumer:
            entry.since = time.monotonic()

    async def pending(self, stream: str, group: str) -> int:
        return len(self._stream(stream).groups.setdefault(group, _Group()).pending)

    async def close(self) -> None:
        self._subscribers.clear()
