"""Fuzzing the AMI side: framing under any TCP chunking, and garbage on the socket.

Events go through a real socket from ``AmiPeer`` into the bridge's ``AmiConnection`` (the
incremental UTF-8 decoder and the event fast path), split at byte positions hypothesis picks,
including inside Korean characters and inside the CRLF CRLF terminator.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.ami.connection import AmiConnection
from ivr.ami.protocol import encode_message, parse_message, split_messages
from tests.support.ami_peer import AmiPeer

_KEY = st.text(st.characters(min_codepoint=65, max_codepoint=122, categories=["Lu", "Ll"]), min_size=1,
               max_size=12)
# Values: anything printable on one line, Korean included (names, queue labels, CDR user fields).
_VALUE = st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=40).map(str.strip)
_EVENT_NAMES = st.sampled_from(["Newchannel", "VarSet", "QueueCallerJoin", "AgentConnect", "Hangup", "Cdr",
                                "UserEvent", "DTMFEnd", "QueueMemberStatus"])


@st.composite
def events(draw: Callable[..., Any]) -> list[dict[str, str]]:
    out = []
    for _ in range(draw(st.integers(1, 8))):
        fields = {"Event": draw(_EVENT_NAMES), "Privilege": "call,all"}
        for key, value in draw(st.dictionaries(_KEY, _VALUE, max_size=6)).items():
            if key not in fields and key != "ActionID":
                fields[key] = value  # empty values too, last or not (VarSet "Value: ", Cdr "UserField: ")
        out.append(fields)
    return out


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@contextlib.asynccontextmanager
async def _connected() -> AsyncIterator[tuple[AmiPeer, AmiConnection]]:
    peer = AmiPeer("fuzz", "fuzz-secret")
    port = await peer.start()
    conn = AmiConnection("127.0.0.1", port, "fuzz", "fuzz-secret")
    conn.start()
    try:
        await peer.wait_login(1)
        await asyncio.wait_for(conn.logged_in.wait(), 10)
        await _settle(peer, conn)  # FullyBooted and the like, dropped
        yield peer, conn
    finally:
        await conn.close()
        await peer.close()


SETTLE = {"Event": "UserEvent", "Privilege": "user,all", "UserEvent": "dasan-settle-marker"}


async def _settle(peer: AmiPeer, conn: AmiConnection, timeout: float = 5) -> list[dict[str, str]]:
    """The events written before this call, all of them: a marker goes out after them on the
    same stream and is waited for, so everything ahead of it has been parsed."""
    peer.logged_in_write(encode_message(SETTLE))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(e.get("UserEvent") == SETTLE["UserEvent"] for e in conn.events):
        assert loop.time() < deadline, "the marker written after the events never arrived"
        await asyncio.sleep(0.002)
    got = conn.take(10_000)
    assert got[-1] == SETTLE, got[-3:]
    return got[:-1]


def test_encode_parse_round_trip() -> None:
    @settings(max_examples=200, deadline=None)
    @given(events())
    def check(evs: list[dict[str, str]]) -> None:
        data = b"".join(encode_message(e) for e in evs)
        messages, rest = split_messages(data)
        assert rest == b""
        assert [parse_message(m) for m in messages] == evs

    check()


def test_any_chunking_delivers_the_same_events_in_order() -> None:
    loop = asyncio.new_event_loop()
    cm = _connected()
    peer, conn = loop.run_until_complete(cm.__aenter__())
    try:
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(events(), st.lists(st.integers(0, 10_000), max_size=12))
        def check(evs: list[dict[str, str]], cuts: list[int]) -> None:
            data = b"".join(encode_message(e) for e in evs)

            async def run() -> list[dict[str, str]]:
                for chunk in _chunks(data, cuts):
                    peer.logged_in_write(chunk)
                    await asyncio.sleep(0)  # separate TCP segments, as far as the kernel allows
                return await _settle(peer, conn)

            got = loop.run_until_complete(run())
            assert got == evs

        check()
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


def test_garbage_on_the_socket_loses_no_later_event() -> None:
    """Junk (binary, half messages, fake responses) then a real event: the event still arrives.

    (``Event: Shutdown`` is left out: it is Asterisk saying it stops, and the bridge rightly
    reconnects.)
    """
    loop = asyncio.new_event_loop()
    cm = _connected()
    peer, conn = loop.run_until_complete(cm.__aenter__())
    try:
        junk = st.one_of(
            st.binary(max_size=300),
            st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.sampled_from([b"Response: Success\r\nActionID: nobody-asked\r\nMessage: hi",
                             b"Response: Error\r\nActionID: 42", b"EventList: start\r\nActionID: x",
                             b"Event\r\nShutdown", b": \r\n:::\r\n", b"\xff\xfe\xed\r\n"]),
        )

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(junk, st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=20))
        def check(garbage: bytes, name: str) -> None:
            marker = {"Event": "UserEvent", "Name": name.strip(), "UserEvent": "fuzz-marker"}

            async def run() -> list[dict[str, str]]:
                peer.logged_in_write(garbage.replace(b"\r\n\r\n", b"\r\n") + b"\r\n\r\n")
                peer.logged_in_write(encode_message(marker))
                loop_ = asyncio.get_running_loop()
                deadline = loop_.time() + 5
                while not any(e.get("UserEvent") == "fuzz-marker" for e in conn.events):
                    if loop_.time() > deadline:
                        break
                    await asyncio.sleep(0.002)
                return conn.take(10_000)

            got = loop.run_until_complete(run())
            assert conn.logged_in.is_set(), "the connection dropped on junk"
            assert got and got[-1] == marker, got[-3:]

        check()
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


async def test_an_empty_last_field_survives() -> None:
    """As in the captures: VarSet ``Value: ``, Cdr ``UserField: ``, Newexten ``AppData: ``."""
    async with _connected() as (peer, conn):
        event = {"Event": "VarSet", "Privilege": "dialplan,all", "Variable": "QUEUE", "Value": ""}
        peer.logged_in_write(encode_message(event))
        assert await _settle(peer, conn) == [event]
