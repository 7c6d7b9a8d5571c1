"""Event bus: live events (pub/sub) and durable jobs (streams with consumer groups).

Two back-ends behind one interface: ``MemoryBus`` (one process, the default) and
``RedisBus`` (several processes: Redis pub/sub for live state, Redis streams with consumer
groups for jobs, so a crashed worker's jobs are claimed by another).
"""

from ivr.bus.base import Bus, Job, Subscription
from ivr.bus.memory import MemoryBus


def create_bus(backend: str, redis_url: str = "", prefix: str = "dasan") -> Bus:
    if backend == "redis":
        from ivr.bus.redis import RedisBus

        return RedisBus(redis_url, prefix=prefix)
    return MemoryBus()


__all__ = ["Bus", "Job", "MemoryBus", "Subscription", "create_bus"]
