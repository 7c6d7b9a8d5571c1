"""Ending the background tasks of a connection or a service: every one is cancelled first, then
each is awaited, so none outlives its owner and none's failure hides the others'."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any


async def cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancels ``tasks``, then waits for each; their cancellation and their errors are swallowed."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
