"""One AMI session over TCP: framing, ActionID matching and event lists, with no library.

The framing is ``ivr.ami.protocol`` (shared with the test peer); every action is turned into
bytes by ``ivr.ami.wire.encode_action``, the one gate that refuses CR/LF/NUL. What this adds:

- UTF-8 decoded incrementally, so a Korean name split across two TCP chunks stays whole;
- the banner (``Asterisk Call Manager/<version>``) read before the first message;
- replies matched to actions by ActionID. A plain action resolves with its first reply. A list
  action (``as_list``) resolves with the reply alone when it is an Error or does not start a
  list, else with every message up to the one that ends it (``...Complete``, or a message
  carrying ``Response:`` such as ``OriginateResponse``), as Asterisk 22 frames them;
- events (messages without a pending ActionID) handed on in order, in batches per TCP chunk;
  ``keep(name, raw)`` False hands on ``{"Event": name}`` without parsing the fields;
- every action still waiting when the connection ends fails with ``ConnectionError``: nothing
  is re-sent later (a re-sent Originate would ring a citizen twice).
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import logging
from collections.abc import Callable
from typing import Any, cast

from ivr.ami.protocol import Fields, parse_message
from ivr.ami.wire import encode_action

log = logging.getLogger("dasan.ami")

_ids = itertools.count(1)


class _Pending:
    __slots__ = ("as_list", "future", "messages")

    def __init__(self, as_list: bool) -> None:
        self.as_list = as_list
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.messages: list[Fields] = []

    def add(self, message: Fields) -> bool:
        """Take one reply; True once the action is answered in full."""
        self.messages.append(message)
        first = self.messages[0]
        if not self.as_list or not _starts_list(first):
            self._resolve(first)
            return True
        if len(self.messages) > 1 and (message.get("Event", "").endswith("Complete")
                                       or message.get("EventList", "").lower() == "complete"
                                       or "Response" in message):
            self._resolve(self.messages)
            return True
        return False

    def _resolve(self, result: Any) -> None:
        if not self.future.done():
            self.future.set_result(result)


def _starts_list(reply: Fields) -> bool:
    if reply.get("Response") != "Success":
        return False
    message = reply.get("Message", "").lower()
    return (reply.get("EventList", "").lower() == "start" or "will follow" in message
            or message.endswith("successfully queued"))


class AmiClientProtocol(asyncio.Protocol):
    """asyncio protocol of one AMI connection; the owner gets events and the end of it."""

    def __init__(self, on_events: Callable[[list[Fields]], None], on_lost: Callable[[Exception | None], None],
                 keep: Callable[[str, str], bool] | None = None) -> None:
        self.on_events, self.on_lost, self.keep = on_events, on_lost, keep
        self.transport: asyncio.Transport | None = None
        self.version: str | None = None
        self.closed = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""
        self._pending: dict[str, _Pending] = {}
        self._prefix = f"dasan-{id(self):x}-"

    # -- asyncio callbacks --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass (dasan up runs on uvloop): cast,
        # never isinstance, or the bridge never logs in on the default loop
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        text = self._buffer + self._decoder.decode(data)
        if self.version is None:
            if "\r\n" not in text:  # the banner may come in pieces
                self._buffer = text
                return
            if text.startswith("Asterisk Call Manager/"):
                banner, _, text = text.partition("\r\n")
                self.version = banner.partition("/")[2].strip()
                log.info("AMI protocol version %s", self.version)
            else:
                self.version = ""
        parts = text.split("\r\n\r\n")
        self._buffer = parts.pop()
        keep = self.keep
        events: list[Fields] = []
        for part in parts:
            # Only line breaks are stripped: an empty last field ("Value: ") must survive.
            part = part.strip("\r\n")
            if not part:
                continue
            if part.startswith("Event: ") and "\r\nActionID: " not in part:
                if part.startswith("Event: Shutdown\r\n"):  # Asterisk stops: this connection is over
                    events.append(parse_message(part))
                    self.on_events(events)
                    events = []
                    self.close()
                    continue
                if keep is not None:
                    end = part.find("\r\n")
                    name = part[7:] if end < 0 else part[7:end]
                    if not keep(name, part):
                        events.append({"Event": name})
                        continue
                events.append(parse_message(part))
                continue
            message = parse_message(part)
            pending = self._pending.get(message.get("ActionID", ""))
            if pending is not None:
                if pending.add(message):
                    del self._pending[message["ActionID"]]
            elif "Event" in message:  # an event carrying an id we no longer wait for
                events.append(message)
        if events:
            self.on_events(events)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pending, self._pending = self._pending, {}
        for action in pending.values():
            if not action.future.done():
                action.future.set_exception(ConnectionError("AMI connection lost"))
        self.on_lost(exc)

    # -- actions --
    def send(self, action: dict[str, Any], as_list: bool = False) -> asyncio.Future[Any]:
        """Write one action (through the wire gate); its future gets the reply or the list."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionError("AMI connection is closed")
        action_id = str(action.get("ActionID") or f"{self._prefix}{next(_ids)}")
        data = encode_action(action, action_id)  # raises UnsafeAmiValue before anything is written
        pending = _Pending(as_list)
        self._pending[action_id] = pending
        self.transport.write(data)
        return pending.future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
