"""Is the phone system reachable? What the web process last heard on ``live.ami``.

The AMI bridge publishes its session's state at every change and as a heartbeat every few
seconds (``ivr.ami.service.ami_status``). The console refuses an agent state change at once,
saying why, when Asterisk is known to be unreachable, and its pages say so plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ivr.context import AppContext
from ivr.contracts import Topic

log = logging.getLogger("dasan.console.phone")
SILENT_BEATS = 3  # heartbeats missed before the bridge itself counts as gone

DOWN_TEXT = ("The phone system (Asterisk) is not reachable: calls and agent state changes do not work now"
             " / 전화 시스템(Asterisk)에 연결할 수 없습니다. 지금은 전화 상담과 상태 변경이 되지 않습니다")
SILENT_TEXT = ("No word from the phone system's bridge (dasan ami) for {seconds:.0f} s: it may be stopped"
               " / 전화 시스템 연결 프로그램(dasan ami)이 {seconds:.0f}초 동안 응답하지 않습니다")


class PhoneStatus:
    """The last ``live.ami`` message and when it came (monotonic)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None
        self.heard_at = 0.0
        self.bus_lag: float | None = None  # seconds from the bridge's publish to our receipt
        self.started = time.monotonic()
        self.expect_bridge = False  # ami.enabled: a bridge should be publishing live.ami
        self._task: asyncio.Task[None] | None = None

    def heard(self, message: dict[str, Any]) -> None:
        self.last, self.heard_at = message, time.monotonic()
        with contextlib.suppress(KeyError, TypeError, ValueError):  # publish -> here: the bus's lag
            self.bus_lag = (datetime.now(UTC) - datetime.fromisoformat(message["at"])).total_seconds()

    def problem(self) -> str | None:
        """Why the phone system is known to be unusable, or None (reachable, or never heard of:
        a site may run the bridge elsewhere; the pages then say 'unknown')."""
        if self.last is None:
            return None
        silent = time.monotonic() - self.heard_at
        if silent > SILENT_BEATS * float(self.last.get("every") or 5):
            return SILENT_TEXT.format(seconds=silent)
        return None if self.last.get("connected") else DOWN_TEXT

    def snapshot(self) -> dict[str, Any]:
        """For a page that just connected: ``{"type": "phone", "known", "connected", "problem"}``.
        With ``ami.enabled`` and not one heartbeat since this process started a grace period
        ago, the bridge is not running: the page says so (a request is still passed on)."""
        problem = self.problem()
        if self.last is None and self.expect_bridge and time.monotonic() - self.started > SILENT_BEATS * 5:
            problem = SILENT_TEXT.format(seconds=time.monotonic() - self.started)
            return {"type": "phone", "known": True, "connected": False, "reason": "silent", "problem": problem,
                    "every": 5}
        reason = None if problem is None else "down" if problem == DOWN_TEXT else "silent"
        return {"type": "phone", "known": self.last is not None, "connected": self.last is not None and not problem,
                "reason": reason, "problem": problem, "every": (self.last or {}).get("every", 5)}

    async def _listen(self, ctx: AppContext) -> None:
        while True:
            try:
                async with await ctx.bus.subscribe(Topic.LIVE_AMI) as sub:
                    async for message in sub:
                        self.heard(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus went away: listen again shortly
                log.warning("live.ami subscription: %s", exc)
                await asyncio.sleep(2)

    def start(self, ctx: AppContext) -> None:
        self.started, self.expect_bridge = time.monotonic(), ctx.settings.ami.enabled
        self._task = asyncio.create_task(self._listen(ctx), name="console-phone-status")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


PHONE_STATUS = web.AppKey("phone_status", PhoneStatus)


def phone_status(request: web.Request) -> PhoneStatus:
    return request.app[PHONE_STATUS]


def setup(app: web.Application, ctx: AppContext) -> None:
    status = PhoneStatus()
    app[PHONE_STATUS] = status

    async def on_startup(_app: web.Application) -> None:
        status.start(ctx)

    async def on_cleanup(_app: web.Application) -> None:
        await status.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
