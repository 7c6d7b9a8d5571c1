"""A long-lived AMI connection: login, reconnect with backoff, keepalive, resync hook.

The session itself (framing, UTF-8 across TCP chunks, ActionID matching, event lists, the wire
gate) is ``ivr.ami.client``; this keeps one up for a bridge that must not lose events:

- it reconnects with exponential backoff (capped, with jitter) and retries a refused Login;
- actions cut off by a disconnect fail with ``ConnectionError`` and are never re-sent (a
  re-sent ``Originate`` would ring a citizen twice); the caller decides (agent state and
  callbacks are re-applied from the DB);
- ``_keepalive`` sends Ping and closes a connection whose Ping gets no reply;
- every event goes, in order, into one queue that the ingester drains, and reading pauses
  when that queue is long (TCP backpressure instead of unbounded memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from ivr.ami.client import AmiClientProtocol

log = logging.getLogger("dasan.ami")

# Actions whose reply is a list of events ending with "...Complete".
LIST_ACTIONS = {"queuestatus", "coreshowchannels", "queuesummary", "status"}


class AmiConnection:
    """Keeps one AMI session up; events go to ``events`` (an ordered queue)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_login: Callable[[], Any] | None = None,
        reconnect_max: float = 30.0,
        reconnect_min: float = 0.2,
        ping_interval: float = 10.0,
        action_timeout: float = 10.0,
        high_water: int = 20000,
        keep: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.host, self.port, self.username = host, port, username
        # keep(name, raw message): False queues the event as {"Event": name} without parsing
        # its fields (in order, so it still counts), for events the consumer never reads.
        self.keep = keep
        self._secret = secret
        self.on_login = on_login
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.ping_interval = ping_interval
        self.action_timeout = action_timeout
        self.high_water = high_water
        self.events: deque[dict[str, str]] = deque()
        self.has_events = asyncio.Event()
        self.logged_in = asyncio.Event()
        self.connects = 0  # successful logins so far
        self.state = "idle"
        self._delay = reconnect_min
        self._paused_reading = False
        self._closing = False
        self._reconnect_handle: asyncio.TimerHandle | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self.protocol: AmiClientProtocol | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._login_task: asyncio.Future[Any] | None = None

    @property
    def address(self) -> str:
        return f"ami://{self.username}@{self.host}:{self.port}"

    # -- lifecycle --
    def start(self) -> None:
        self.state = "connecting"
        self._connect()
        self._keepalive_task = asyncio.create_task(self._keepalive())

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_handle:
            self._reconnect_handle.cancel()
        for task in (self._keepalive_task, self._connect_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.protocol is not None and not self.protocol.closed and self.logged_in.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send({"Action": "Logoff"}), 2)
        if self.protocol is not None:
            self.protocol.close()
        self.logged_in.clear()
        self.state = "closed"

    def _connect(self) -> None:
        self._reconnect_handle = None
        self._connect_task = asyncio.create_task(self._open())

    def _new_protocol(self) -> AmiClientProtocol:
        protocol = AmiClientProtocol(self._queue_events, lambda exc: self._lost(protocol, exc), self.keep)
        return protocol

    async def _open(self) -> None:
        """Connect and log in; any failure ends in a backoff reconnect."""
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(self._new_protocol, self.host, self.port)
        except OSError as exc:
            self._schedule_reconnect(f"connect failed: {exc}")
            return
        self.protocol = protocol
        log.debug("AMI %s: TCP connected, logging in", self.address)
        login = {"Action": "Login", "Username": self.username, "Secret": self._secret, "Events": "on"}
        try:
            reply = await asyncio.wait_for(protocol.send(login), self.action_timeout)
        except (ConnectionError, TimeoutError):  # lost: _lost reconnects; silent: close, then the same
            protocol.close()
            return
        if reply.get("Response") != "Success":
            self._login_refused(str(reply.get("Message", "") or reply))
            return
        self._on_login()

    def _on_login(self) -> None:
        self.connects += 1
        self._delay = self.reconnect_min
        self.state = "connected"
        self.logged_in.set()
        log.info("AMI %s: logged in (connection %d)", self.address, self.connects)
        if self.on_login is not None:
            result = self.on_login()
            if asyncio.iscoroutine(result):
                self._login_task = asyncio.ensure_future(result)

    def _login_refused(self, message: str) -> None:
        log.error("AMI %s: login refused: %s", self.address, message)
        self.state = "login refused"
        if self.protocol is not None:
            # Closing triggers connection_lost -> backoff reconnect.
            self.protocol.close()

    def _lost(self, protocol: AmiClientProtocol, exc: Exception | None) -> None:
        if protocol is not self.protocol:  # an older connection ending late
            return
        self.logged_in.clear()
        self._paused_reading = False
        if self._closing:
            return
        self._schedule_reconnect(f"connection lost ({exc or 'closed by peer'})")

    def _schedule_reconnect(self, why: str) -> None:
        if self._closing:
            return
        delay = self._delay * (0.8 + 0.4 * random.random())
        self._delay = min(self._delay * 2, self.reconnect_max)
        if self.state != "login refused":
            self.state = "connecting"
        log.warning("AMI %s: %s; retrying in %.1f s", self.address, why, delay)
        loop = asyncio.get_running_loop()
        self._reconnect_handle = loop.call_later(delay, self._connect)

    def _queue_events(self, events: list[dict[str, str]]) -> None:
        self.events.extend(events)
        self.has_events.set()
        if len(self.events) > self.high_water and not self._paused_reading:
            self._set_reading(False)

    def _set_reading(self, on: bool) -> None:
        protocol = self.protocol
        transport = protocol.transport if protocol is not None else None
        if protocol is None or transport is None or protocol.closed:
            return
        with contextlib.suppress(Exception):
            (transport.resume_reading if on else transport.pause_reading)()
            self._paused_reading = not on

    def take(self, limit: int) -> list[dict[str, str]]:
        """Up to ``limit`` queued events, oldest first."""
        batch: list[dict[str, str]] = []
        events = self.events
        while events and len(batch) < limit:
            batch.append(events.popleft())
        if not events:
            self.has_events.clear()
        if self._paused_reading and len(events) < self.high_water // 4:
            self._set_reading(True)
        return batch

    # -- actions --
    async def send(self, action: dict[str, Any], timeout: float | None = None) -> Any:
        """Send an action; its reply, or for list actions the reply and the list's events."""
        protocol = self.protocol
        if protocol is None or protocol.closed or not self.logged_in.is_set():
            raise ConnectionError(f"AMI {self.address} is not connected")
        name = str(action.get("Action", "")).lower()
        is_list = name in LIST_ACTIONS or (name == "originate" and str(action.get("Async", "")).lower() == "true")
        # A list action whose reply is an Error (or starts no list) resolves with the reply alone.
        future = protocol.send(dict(action), as_list=is_list)
        return await asyncio.wait_for(future, timeout or self.action_timeout)

    async def send_list(self, action: dict[str, Any], timeout: float | None = None) -> list[dict[str, str]]:
        """A list action's events (without the leading response); raises on Error."""
        result = await self.send(action, timeout)
        messages = result if isinstance(result, list) else [result]
        first = messages[0]
        if first.get("Response") == "Error":
            raise AmiError(first.get("Message", "error"))
        return [m for m in messages[1:] if "Event" in m]

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if not self.logged_in.is_set() or self.protocol is None:
                continue
            try:
                await self.send({"Action": "Ping"}, timeout=self.ping_interval)
            except (TimeoutError, ConnectionError):
                log.warning("AMI %s: no reply to Ping, reconnecting", self.address)
                self.protocol.close()
            except Exception:
                log.exception("AMI keepalive")


class AmiError(Exception):
    """Asterisk answered ``Response: Error``."""


def ok(response: Any, *accept: str) -> bool:
    """True for Success, or for an Error whose Message says what we wanted already holds."""
    if response.get("Response") == "Success":
        return True
    message = str(response.get("Message", ""))
    return any(a.lower() in message.lower() for a in accept)
