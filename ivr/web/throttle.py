"""Sign-in throttle: failures counted per account and per client address, shared by every
sign-in route (``/login`` and ``/api/login`` both go through ``ivr.web.auth.sign_in``).

The first ``free`` failures of a key cost nothing; after that each attempt must wait, the wait
doubling with every further failure (2 s, 4 s, 8 s ... up to ``max_delay``). An attempt made
before its wait is over is refused without checking the password, so guessing is bounded by
the waits, not by how fast the server answers. An attempt counts as a failure from the moment
it is let through (``attempt``), so a burst of parallel guesses cannot all pass before the
first one fails; a success takes its own count back and clears the account's (not the
address's: one valid account must not reset an address that is guessing others). Counts
expire after a quiet ``max_delay`` and live in this process (each web process counts on its
own); idle entries are dropped so memory stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_ENTRIES = 100_000


@dataclass
class _Failures:
    count: int
    last: float
    refused: int = 0  # attempts refused since the last failure


class LoginThrottle:
    def __init__(self, free: int, max_delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.free = free
        self.max_delay = max_delay
        self.clock = clock
        self.entries: dict[str, _Failures] = {}

    @staticmethod
    def keys(username: str, address: str | None) -> tuple[str, str]:
        return f"user:{username.strip().lower()}", f"addr:{address or '?'}"

    def _delay(self, failures: _Failures | None, now: float) -> float:
        if failures is None or now - failures.last > self.max_delay:
            return 0.0
        if failures.count < self.free:
            return 0.0
        wait = min(self.max_delay, 2.0 ** (failures.count - self.free + 1))
        return max(0.0, failures.last + wait - now)

    def wait(self, username: str, address: str | None) -> float:
        """Seconds before this account may be tried from this address (0: now)."""
        now = self.clock()
        return max(self._delay(self.entries.get(key), now) for key in self.keys(username, address))

    def attempt(self, username: str, address: str | None) -> float:
        """Let an attempt through (0, counted as a failure until ``succeeded``) or say how many
        seconds it must wait (nothing counted)."""
        wait = self.wait(username, address)
        if wait <= 0:
            self.failed(username, address)
        return wait

    def refused(self, username: str, address: str | None) -> bool:
        """Note a refused attempt; True for the first one since the last failure (worth an audit
        row; a flood of refusals is not, it would only load the database)."""
        first = False
        for key in self.keys(username, address):
            entry = self.entries.get(key)
            if entry is not None:
                entry.refused += 1
                first = first or entry.refused == 1
        return first

    def failed(self, username: str, address: str | None) -> None:
        now = self.clock()
        for key in self.keys(username, address):
            entry = self.entries.get(key)
            if entry is None or now - entry.last > self.max_delay:
                entry = self.entries[key] = _Failures(0, now)
            entry.count += 1
            entry.last = now
            entry.refused = 0
        if len(self.entries) > MAX_ENTRIES:
            self.entries = {k: v for k, v in self.entries.items() if now - v.last <= self.max_delay}

    def succeeded(self, username: str, address: str | None = None) -> None:
        """The attempt let through was right: the account starts afresh, the address gets its
        one count back."""
        account, by_address = self.keys(username, address)
        self.entries.pop(account, None)
        entry = self.entries.get(by_address) if address is not None else None
        if entry is not None:
            entry.count = max(0, entry.count - 1)
