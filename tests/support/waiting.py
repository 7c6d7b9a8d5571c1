"""Waiting for a condition when there is no event to await: ask again until a deadline.

A test that sleeps a fixed time and hopes the thing happened is flaky on a busy machine and
slow on an idle one; this returns as soon as the condition holds and fails with what it was
waiting for when it never does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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


async def page_holds(page: Any, expression: str, timeout: float = 10.0) -> Any:
    """Wait until the JavaScript ``expression`` is truthy in ``page``.

    Playwright's ``wait_for_function`` re-runs its predicate through ``eval`` from a
    requestAnimationFrame callback, which the pages' CSP (``script-src 'self'``) refuses as soon
    as the first check is false. Each ``page.evaluate`` starts from DevTools, which the CSP
    lets through, so polling with it keeps the pages' real CSP on in the tests.
    """
    return await eventually(lambda: page.evaluate(expression), f"page to hold {expression!r}",
                            timeout=timeout, interval=0.05)
