"""Waiting for a condition when there is no event to await: ask again until a deadline.

A test that sleeps a fixed time and hopes the thing happened is flaky on a busy machine and
slow on an idle one; this returns as soon as the condition holds and fails with what it was
waiting for when it never does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], what: str, timeout: float = 10.0,
                     interval: float = 0.01) -> T:
    """The first truthy value ``check()`` returns (it may be a coroutine function)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
