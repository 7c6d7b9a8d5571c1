"""Transactions that lost a race with another one: deadlocks and serialization failures.

PostgreSQL ends one of two transactions that wait for each other's row locks with SQLSTATE
40P01 (deadlock detected), and a transaction that cannot be serialized with 40001. Nothing of
it was written, and the same work run again a moment later normally goes through: such a
failure is retried (bounded, after a random pause so the two do not meet again in step), never
reported as a lost write while a retry can still save it. The writers also take their row
locks in one order (``ivr.records.lock_contacts``), so a deadlock between them should not
happen at all; the counters say whether it did.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CONFLICT_STATES = {"40P01": "deadlock", "40001": "serialization failure"}
RETRIES = 8  # runs again after the first: a conflict that outlasts these is not a race any more
FIRST_PAUSE = 0.005  # seconds; doubled each try, at most MAX_PAUSE, the pause drawn below it
MAX_PAUSE = 0.5


def conflict_of(exc: BaseException) -> str | None:
    """'deadlock' or 'serialization failure' when ``exc`` (or the driver error inside it) is
    one, else None. SQLAlchemy wraps the driver's error (``.orig``); psycopg names the SQLSTATE."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if state in CONFLICT_STATES:
            return CONFLICT_STATES[state]
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return None


def pause(attempt: int) -> float:
    """Seconds to wait before try ``attempt`` (1, 2, ...): random below a doubling bound."""
    return random.uniform(0, min(MAX_PAUSE, FIRST_PAUSE * 2 ** attempt))


@dataclass
class ConflictCounters:
    """What a writer met: transactions ended by a conflict, runs again, writes given up."""

    seen: int = 0  # transactions that failed with a deadlock or serialization failure
    retried: int = 0  # of those, run again
    lost: int = 0  # writes (items, events) failed because conflicts outlasted the retries

    def add(self, other: ConflictCounters) -> ConflictCounters:
        return ConflictCounters(self.seen + other.seen, self.retried + other.retried, self.lost + other.lost)
