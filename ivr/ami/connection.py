"""A long-lived AMI connection on panoramisk's Manager: login, reconnect with backoff, resync.

panoramisk 1.4 is used for what it does well (framing, ActionID matching, EventList
collection) and patched where it does not fit a bridge that must not lose or corrupt events:

- ``AMIProtocol.data_received`` decodes every TCP chunk on its own with ``errors='ignore'``,
  so a Korean name split across two chunks silently loses bytes. ``_Utf8Protocol`` decodes
  incrementally instead.
- Reconnect is a fixed 2 s timer and a refused Login just sits there. ``_BridgeManager``
  reconnects with exponential backoff (capped, with jitter) and retries a refused Login.
- Actions cut off by a disconnect are kept and re-sent after the next ``FullyBooted``; a
  re-sent ``Originate`` would ring a citizen twice, so they fail with ``ConnectionError``
  instead and the caller decides (agent state and callbacks are re-applied from the DB).
- ``Action.multi`` treats "Added interface to queue" as the start of a list, so a plain
  ``QueueAdd`` future never resolves; ``send`` passes ``as_list=False`` for single replies.
- It writes header values as they are: every action passes ``ivr.ami.wire`` (no CR/LF/NUL).
- Its pinger never checks the reply; ``_keepalive`` closes a connection whose Ping times out.
- Events are dispatched by calling handlers directly (coroutines become unordered tasks);
  here every event goes, in order, into one queue that the ingester drains, and reading
  pauses when that queue is long (TCP backpressure instead of unbounded memory).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from panoramisk import Manager
from panoramisk.message import Message

from ivr.ami.wire import SafeAmiProtocol

log = logging.getLogger("dasan.ami")

# Actions whose list of events ends with "...Complete".
LIST_ACTIONS = {"queuestatus", "coreshowchannels", "queuesummary", "status"}


class _Utf8Protocol(SafeAmiProtocol):
    """Incremental UTF-8 decoding, and a fast path for plain events (no ActionID).

    Responses and event-list items still go through panoramisk (``handle_message``) so its
    ActionID matching resolves the action futures; plain events are parsed into dicts here
    and queued directly, which is ~3x cheaper than Message/CaseInsensitiveDict + dispatch.
    Events the owner's ``keep`` rejects (most of a call's events: VarSet, Newexten, RTCP...)
    are not parsed at all.
    """

    version: str | None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""

    def data_received(self, data: bytes) -> None:
        text = self._buffer + self._decoder.decode(data)
        if self.factory is None:  # the banner can arrive before panoramisk wires the manager
            self._buffer = text
            return
        if self.version is None and text.startswith("Asterisk Call Manager/"):
            banner, _, text = text.partition("\r\n")
            self.version = banner.partition("/")[2].strip()
            self.log.info("AMI protocol version %s", self.version)
        parts = text.split("\r\n\r\n")
        self._buffer = parts.pop()
        owner = self.factory.owner
        keep = owner.keep
        queued: list[dict[str, str]] = []
        for part in parts:
            # Only line breaks are stripped: an empty last field ("Value: ") must survive.
            part = part.strip("\r\n")
            if not part:
                continue
            if part.startswith("Event: ") and "\r\nActionID: " not in part and not part.startswith("Event: Shutdown"):
                if keep is not None:
                    end = part.find("\r\n")
                    name = part[7:] if end < 0 else part[7:end]
                    if not keep(name, part):
                        queued.append({"Event": name})
                        continue
                fields: dict[str, str] = {}
                for line in part.split("\r\n"):
                    key, sep, value = line.partition(": ")
                    if sep:
                        fields[key] = value
                    elif line.endswith(":"):
                        fields[line[:-1]] = ""
                queued.append(fields)
                continue
            if queued:  # keep the order with a Shutdown event that panoramisk dispatches
                owner._queue_events(queued)
                queued = []
            message = Message.from_line(part)
            if message is not None:
                self.handle_message(message)
        if queued:
            owner._queue_events(queued)


def _message_fields(message: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in message.items():
        fields[key] = value[-1] if isinstance(value, list) else value
    return fields


class _BridgeManager(Manager):  # type: ignore[misc]
    pinger: asyncio.TimerHandle | None
    def __init__(self, owner: AmiConnection, **config: Any) -> None:
        super().__init__(**config)
        self.owner = owner

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            exc = None if f.cancelled() else f.exception()
            self._connected = False
            self.owner._schedule_reconnect(f"connect failed: {exc}")
            return
        super().connection_made(f)
        self.owner._connected_transport()

    def login(self, future: asyncio.Future[Any]) -> bool:
        ok = bool(super().login(future))
        if not ok:
            response = future.result()
            self.owner._login_refused(str(getattr(response, "message", "") or response))
        return ok

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        # Fail what was cut off instead of re-sending it later (see module docstring).
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(ConnectionError("AMI connection lost"))
        self.owner._lost(exc)


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
        self.manager: _BridgeManager | None = None
        self._login_task: asyncio.Future[Any] | None = None

    @property
    def address(self) -> str:
        return f"ami://{self.username}@{self.host}:{self.port}"

    # -- lifecycle --
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.manager = _BridgeManager(
            self,
            host=self.host,
            port=self.port,
            username=self.username,
            secret=self._secret,
            events="on",
            loop=loop,
            protocol_factory=_Utf8Protocol,
            ping_delay=10**9,  # our own keepalive checks replies
            on_login=self._on_login,
            log=log,
        )
        self.manager.register_event("*", self._on_event)
        self.state = "connecting"
        self.manager.connect()
        self._keepalive_task = asyncio.create_task(self._keepalive())

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_handle:
            self._reconnect_handle.cancel()
        if self._keepalive_task:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        if self.manager is not None and self.manager.protocol is not None and self.logged_in.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send({"Action": "Logoff"}), 2)
        if self.manager is not None:
            self.manager.close()
        self.logged_in.clear()
        self.state = "closed"

    # -- callbacks from the manager --
    def _connected_transport(self) -> None:
        log.debug("AMI %s: TCP connected, logging in", self.address)

    def _on_login(self, _manager: Any) -> None:
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
        if self.manager is not None and self.manager.protocol is not None:
            # Closing triggers connection_lost -> backoff reconnect.
            self.manager.protocol.transport.close()

    def _lost(self, exc: Any) -> None:
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
        assert self.manager is not None
        self._reconnect_handle = loop.call_later(delay, self.manager.connect)

    def _on_event(self, _manager: Any, message: Message) -> None:
        self._queue_event(_message_fields(message))

    def _queue_event(self, fields: dict[str, str]) -> None:
        self._queue_events([fields])

    def _queue_events(self, events: list[dict[str, str]]) -> None:
        self.events.extend(events)
        self.has_events.set()
        if len(self.events) > self.high_water and not self._paused_reading:
            self._set_reading(False)

    def _set_reading(self, on: bool) -> None:
        protocol = self.manager.protocol if self.manager else None
        transport = getattr(protocol, "transport", None)
        if transport is None or getattr(protocol, "closed", True):
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
        """Send an action; a Message, or a list of Messages for list actions."""
        if self.manager is None or not self.logged_in.is_set():
            raise ConnectionError(f"AMI {self.address} is not connected")
        name = str(action.get("Action", "")).lower()
        is_list = name in LIST_ACTIONS or (name == "originate" and str(action.get("Async", "")).lower() == "true")
        # None lets panoramisk detect "EventList: start" (and an Error reply ends it at once);
        # True would wait forever after an Error, False would stop at the first message.
        future = self.manager.send_action(dict(action), as_list=None if is_list else False)
        return await asyncio.wait_for(future, timeout or self.action_timeout)

    async def send_list(self, action: dict[str, Any], timeout: float | None = None) -> list[dict[str, str]]:
        """A list action's events (without the leading response); raises on Error."""
        result = await self.send(action, timeout)
        messages = result if isinstance(result, list) else [result]
        first = messages[0]
        if first.get("Response") == "Error":
            raise AmiError(first.get("Message", "error"))
        return [_message_fields(m) for m in messages[1:] if "Event" in m]

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if not self.logged_in.is_set() or self.manager is None:
                continue
            try:
                await self.send({"Action": "Ping"}, timeout=self.ping_interval)
            except (TimeoutError, ConnectionError):
                log.warning("AMI %s: no reply to Ping, reconnecting", self.address)
                protocol = self.manager.protocol
                if protocol is not None:
                    protocol.transport.close()
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
