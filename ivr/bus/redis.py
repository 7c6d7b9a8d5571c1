"""Redis bus: pub/sub for live events, streams + consumer groups for jobs."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from ivr.bus.base import Bus, Job, Subscription


class _RedisSubscription(Subscription):
    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        # get_message returns None on timeout; a None timeout would poll, so wait in slices.
        import asyncio
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            slice_ = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=slice_)
            if msg is not None and msg.get("type") == "message":
                return dict(json.loads(msg["data"]))
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if msg is None and slice_ == 0:
                await asyncio.sleep(0)

    async def close(self) -> None:
        await self._pubsub.aclose()


def _decode(fields: dict[Any, Any]) -> dict[str, Any]:
    raw = fields.get(b"data") or fields.get("data") or b"{}"
    return dict(json.loads(raw))


class RedisBus(Bus):
    def __init__(self, url: str, prefix: str = "dasan") -> None:
        self.url, self.prefix = url, prefix
        # No automatic retries: redis-py 8 retries a failed command up to 10 times with backoff,
        # which holds a caller for many seconds while Redis is away and may send an XADD twice.
        # Every user of the bus has its own recovery (jobs kept in the database are re-sent,
        # a webhook answers 503, worker loops wait and go on), so errors surface at once.
        self.redis = aioredis.from_url(url, retry=Retry(NoBackoff(), 0))
        self._groups: set[tuple[str, str]] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def start(self) -> None:
        await self.redis.ping()

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        await self.redis.publish(self.key(topic), json.dumps(message, default=str))

    async def subscribe(self, topic: str) -> Subscription:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self.key(topic))
        return _RedisSubscription(pubsub)

    async def enqueue(self, stream: str, data: dict[str, Any]) -> str:
        job_id = await self.redis.xadd(self.key(stream), {"data": json.dumps(data, default=str)})
        return job_id.decode() if isinstance(job_id, bytes) else str(job_id)

    async def _ensure_group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups:
            return
        try:
            await self.redis.xgroup_create(self.key(stream), group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    async def consume(
        self, stream: str, group: str, consumer: str, count: int = 1, block: float = 1.0
    ) -> list[Job]:
        await self._ensure_group(stream, group)
        reply: Any = await self.redis.xreadgroup(
            group, consumer, {self.key(stream): ">"}, count=count, block=max(1, int(block * 1000))
        )
        jobs: list[Job] = []
        for _key, entries in reply or []:
            for job_id, fields in entries:
                jid = job_id.decode() if isinstance(job_id, bytes) else job_id
                jobs.append(Job(stream, jid, _decode(fields), 1))
        return jobs

    async def ack(self, job: Job, group: str) -> None:
        await self.redis.xack(self.key(job.stream), group, job.id)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int = 10
    ) -> list[Job]:
        await self._ensure_group(stream, group)
        reply: Any = await self.redis.xautoclaim(
            self.key(stream), group, consumer, min_idle_time=int(min_idle * 1000), count=count
        )
        entries = reply[1]
        jobs = []
        for job_id, fields in entries:
            if fields is None:  # deleted from the stream meanwhile
                continue
            jid = job_id.decode() if isinstance(job_id, bytes) else job_id
            info = await self.redis.xpending_range(self.key(stream), group, jid, jid, 1)
            deliveries = int(info[0]["times_delivered"]) if info else 2
            jobs.append(Job(stream, jid, _decode(fields), deliveries))
        return jobs

    async def touch(self, job: Job, group: str, consumer: str) -> None:
        # XCLAIM to ourselves with JUSTID resets the idle time without counting a delivery.
        await self.redis.xclaim(self.key(job.stream), group, consumer, 0, [job.id], justid=True)

    async def pending(self, stream: str, group: str) -> int:
        await self._ensure_group(stream, group)
        info = await self.redis.xpending(self.key(stream), group)
        return int(info["pending"])

    async def close(self) -> None:
        await self.redis.aclose()
