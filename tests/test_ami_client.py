"""The AMI session of our own (ivr.ami.client, ivr.ami.wire.encode_action) without sockets.

The replies are framed as Asterisk 22's manager.c writes them and as the captures in
tests/data show (ActionID right after Response, ``EventList: start`` ... ``...Complete``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from ivr.ami.client import AmiClientProtocol
from ivr.ami.protocol import Fields, parse_message, split_messages
from ivr.ami.wire import UnsafeAmiValue, encode_action


class FakeTransport(asyncio.Transport):
    def __init__(self, protocol: AmiClientProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.protocol.connection_lost(None)

    def sent(self) -> list[Fields]:
        messages, rest = split_messages(bytes(self.written))
        assert rest == b""
        return [parse_message(m) for m in messages]


class Session:
    def __init__(self, keep: Any = None) -> None:
        self.events: list[Fields] = []
        self.lost: list[Exception | None] = []
        self.protocol = AmiClientProtocol(self.events.extend, self.lost.append, keep)
        self.transport = FakeTransport(self.protocol)
        self.protocol.connection_made(self.transport)
        self.protocol.data_received(b"Asterisk Call Manager/11.0.0\r\n")

    def feed(self, text: str) -> None:
        self.protocol.data_received(text.encode())

    def last_id(self) -> str:
        return self.transport.sent()[-1]["ActionID"]


def test_encode_action_puts_the_id_after_the_action_and_repeats_list_values() -> None:
    data = encode_action({"Action": "Originate", "Channel": "Local/1@x", "Variable": ["A=1", "B=김"]}, "id-1")
    assert data == ("Action: Originate\r\nActionID: id-1\r\nChannel: Local/1@x\r\n"
                    "Variable: A=1\r\nVariable: B=김\r\n\r\n").encode()


@pytest.mark.parametrize("bad", [{"Action": "QueuePause", "Reason": "lunch\r\nAction: Command"},
                                 {"Action": "Ping", "Bad: key": "x"}, {"Action": "Ping\x00"},
                                 {"Action": "Originate", "Variable": ["A=1", "B=2\nAction: Logoff"]}])
async def test_nothing_unsafe_reaches_the_wire(bad: dict[str, Any]) -> None:
    s = Session()
    with pytest.raises(UnsafeAmiValue):
        s.protocol.send(bad)
    assert s.transport.written == b""
    with pytest.raises(UnsafeAmiValue):
        encode_action({"Action": "Ping"}, "id\r\nAction: Logoff")


async def test_banner_in_pieces_then_a_single_reply() -> None:
    events: list[Fields] = []
    protocol = AmiClientProtocol(events.extend, lambda exc: None)
    protocol.connection_made(FakeTransport(protocol))
    protocol.data_received(b"Asterisk Call Man")
    protocol.data_received(b"ager/11.0.0\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
    assert protocol.version == "11.0.0"
    assert events == [{"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"}]


async def test_single_replies_resolve_at_once_even_added_to_queue() -> None:
    s = Session()
    future = s.protocol.send({"Action": "QueueAdd", "Queue": "general-ko", "Interface": "PJSIP/agent1001"})
    s.feed(f"Response: Success\r\nActionID: {s.last_id()}\r\nMessage: Added interface to queue\r\n\r\n")
    reply = await asyncio.wait_for(future, 1)
    assert reply["Message"] == "Added interface to queue"


async def test_a_list_collects_its_events_up_to_complete_in_chunks() -> None:
    s = Session()
    future = s.protocol.send({"Action": "QueueStatus"}, as_list=True)
    aid = s.last_id()
    text = (f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\nMessage: Queue status will follow\r\n\r\n"
            f"Event: QueueParams\r\nQueue: general-ko\r\nActionID: {aid}\r\n\r\n"
            "Event: Newchannel\r\nUniqueid: 1.1\r\nCallerIDName: 김민지\r\n\r\n"
            f"Event: QueueStatusComplete\r\nActionID: {aid}\r\nEventList: Complete\r\nListItems: 1\r\n\r\n")
    data = text.encode()
    cut = data.index("민".encode()) + 1
    s.protocol.data_received(data[:cut])
    assert not future.done()
    s.protocol.data_received(data[cut:])
    reply = await asyncio.wait_for(future, 1)
    assert [m.get("Event", m.get("Response")) for m in reply] == ["Success", "QueueParams", "QueueStatusComplete"]
    assert s.events == [{"Event": "Newchannel", "Uniqueid": "1.1", "CallerIDName": "김민지"}]


async def test_a_list_action_answered_with_an_error_resolves_with_the_error() -> None:
    s = Session()
    future = s.protocol.send({"Action": "QueueStatus"}, as_list=True)
    s.feed(f"Response: Error\r\nActionID: {s.last_id()}\r\nMessage: Invalid/unknown command: QueueStatus.\r\n\r\n")
    reply = await asyncio.wait_for(future, 1)
    assert reply["Response"] == "Error"


async def test_async_originate_ends_with_its_originate_response() -> None:
    s = Session()
    future = s.protocol.send({"Action": "Originate", "Channel": "Local/1@x", "Async": "true"}, as_list=True)
    aid = s.last_id()
    s.feed(f"Response: Success\r\nActionID: {aid}\r\nMessage: Originate successfully queued\r\n\r\n")
    assert not future.done()
    s.feed(f"Event: OriginateResponse\r\nActionID: {aid}\r\nResponse: Failure\r\nReason: 3\r\n\r\n")
    reply = await asyncio.wait_for(future, 1)
    assert reply[-1]["Reason"] == "3"
    # A late message for an id nobody waits for is an event like any other.
    s.feed(f"Event: OriginateResponse\r\nActionID: {aid}\r\nResponse: Success\r\n\r\n")
    assert s.events[-1]["Event"] == "OriginateResponse"


async def test_keep_false_hands_on_the_name_only_and_order_holds() -> None:
    s = Session(keep=lambda name, raw: name != "VarSet")
    s.feed("Event: VarSet\r\nVariable: X\r\nValue: 1\r\n\r\nEvent: Hangup\r\nUniqueid: 1.1\r\nCause-txt: \r\n\r\n")
    assert s.events == [{"Event": "VarSet"}, {"Event": "Hangup", "Uniqueid": "1.1", "Cause-txt": ""}]


async def test_waiting_actions_fail_when_the_connection_ends_and_later_sends_refuse() -> None:
    s = Session()
    future = s.protocol.send({"Action": "Originate", "Channel": "Local/1@x", "Async": "true"}, as_list=True)
    s.protocol.connection_lost(ConnectionResetError())
    with pytest.raises(ConnectionError):
        await future
    assert len(s.lost) == 1
    with pytest.raises(ConnectionError):
        s.protocol.send({"Action": "Ping"})


async def test_shutdown_is_handed_on_and_closes_the_connection() -> None:
    s = Session(keep=lambda name, raw: False)  # handed on whole even when the consumer reads nothing
    s.feed("Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n")
    assert s.events == [{"Event": "Shutdown", "Shutdown": "Cleanly", "Restart": "True"}]
    assert s.transport.closing and s.protocol.closed and s.lost == [None]


def test_the_running_code_does_not_import_panoramisk() -> None:
    # panoramisk stays only as a pinned dev dependency for bench/bench_ami.py's comparison row.
    code = ("import sys, ivr.ami.service, ivr.asterisk.apply, ivr.cli; "
            "assert 'panoramisk' not in sys.modules, 'panoramisk imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
