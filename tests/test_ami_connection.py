"""The AMI connection on panoramisk: framing, UTF-8 across chunks, event lists, reconnect with backoff."""

from __future__ import annotations

import asyncio
import socket

from ivr.ami.connection import AmiConnection
from ivr.ami.protocol import event_messages, load_dialog, unsolicited_chunks
from tests.support.ami_harness import capture_chunks, index_of, wait_for
from tests.support.ami_peer import AmiPeer
from tests.support.data import CAPTURES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _connected(peer: AmiPeer) -> AmiConnection:
    conn = AmiConnection("127.0.0.1", peer.port, "dasan", "change-me", reconnect_min=0.05, reconnect_max=0.5)
    conn.start()
    await asyncio.wait_for(conn.logged_in.wait(), 10)
    return conn


def test_capture_chunks_keep_every_event_and_drop_recorder_replies() -> None:
    raw = (CAPTURES / "agent-actions" / "ami.log").read_bytes()
    chunks = unsolicited_chunks(load_dialog(CAPTURES / "agent-actions" / "ami.dialog.log"))
    events = event_messages(chunks)
    assert not any("ActionID" in e or "Response" in e for e in events)
    plain = raw.count(b"\r\nEvent: ") + raw.startswith(b"Event: ")
    with_ids = sum(1 for m in raw.split(b"\r\n\r\n") if b"Event: " in m and b"ActionID: " in m)
    assert len(events) == plain - with_ids
    assert chunks[0].startswith(b"Event: FullyBooted")


async def test_events_in_order_and_korean_split_across_tcp_chunks() -> None:
    peer = AmiPeer()
    await peer.start()
    conn = await _connected(peer)
    try:
        await wait_for(lambda: len(conn.events) == 1)
        assert conn.take(10)[0]["Event"] == "FullyBooted"  # follows the login, like Asterisk 22
        message = "Event: QueueMemberAdded\r\nQueue: general-ko\r\nMemberName: 김민지\r\nInterface: PJSIP/agent1001\r\n\r\n"
        data = message.encode()
        split = data.index("민".encode()) + 1  # inside a 3-byte character
        await peer.play([data[:split]])
        await asyncio.sleep(0.05)
        await peer.play([data[split:]])
        chunks = capture_chunks("answered")
        await peer.play(chunks)
        expected = 1 + len(event_messages(chunks))
        await wait_for(lambda: len(conn.events) >= expected)
        events = conn.take(100_000)
        assert events[0]["MemberName"] == "김민지"
        assert [e["Event"] for e in events[1:]] == [e["Event"] for e in event_messages(chunks)]
    finally:
        await conn.close()
        await peer.close()


async def test_event_lists_and_single_replies_resolve() -> None:
    peer = AmiPeer()
    await peer.start()
    conn = await _connected(peer)
    try:
        chunks = capture_chunks("abandoned")
        await peer.play(chunks[: index_of(chunks, "Event: QueueCallerJoin") + 1])
        status = await conn.send_list({"Action": "QueueStatus"})
        assert [e["Event"] for e in status] == ["QueueParams", "QueueEntry", "QueueStatusComplete"]
        # panoramisk alone never resolves this one ("Added interface to queue" looks like a list start)
        added = await conn.send({"Action": "QueueAdd", "Queue": "general-ko", "Interface": "PJSIP/agent1001"})
        assert added["Message"] == "Added interface to queue"
        again = await conn.send({"Action": "QueueAdd", "Queue": "general-ko", "Interface": "PJSIP/agent1001"})
        assert again["Response"] == "Error"
        unknown = await conn.send({"Action": "NoSuchAction"})
        assert unknown["Message"].startswith("Invalid/unknown command")
        channels = await conn.send_list({"Action": "CoreShowChannels"})
        assert channels[-1]["Event"] == "CoreShowChannelsComplete"
        assert [c["Uniqueid"] for c in channels[:-1]] == ["1795593184.10"]  # the caller of the capture
    finally:
        await conn.close()
        await peer.close()


async def test_keeps_retrying_with_backoff_until_asterisk_appears() -> None:
    port = _free_port()
    conn = AmiConnection("127.0.0.1", port, "dasan", "change-me", reconnect_min=0.05, reconnect_max=0.4)
    conn.start()
    peer = AmiPeer()
    try:
        await asyncio.sleep(0.6)  # several refused connects
        assert conn.state == "connecting" and not conn.logged_in.is_set()
        await peer.start(port=port)
        await asyncio.wait_for(conn.logged_in.wait(), 10)
        assert conn.connects == 1
        peer.drop()  # and again after a cut
        await peer.wait_login(2)
        await wait_for(lambda: conn.connects == 2)
    finally:
        await conn.close()
        await peer.close()


async def test_actions_cut_off_by_a_disconnect_fail_instead_of_being_resent() -> None:
    peer = AmiPeer()
    await peer.start()
    conn = await _connected(peer)
    try:
        peer.drop()  # whether the connection noticed yet or not, the action must fail
        try:
            await conn.send({"Action": "Originate", "Channel": "Local/en@x", "Exten": "1", "Async": "true"}, timeout=2)
            raised = False
        except (ConnectionError, TimeoutError):
            raised = True
        assert raised
        await peer.wait_login(2)
        await wait_for(lambda: conn.connects == 2)
        # A resent action would reach Asterisk before one sent after the new login.
        await conn.send({"Action": "Ping"}, timeout=5)
        assert [a["Action"] for a in peer.actions if a.get("Action") in ("Originate", "Ping")] == ["Ping"]
    finally:
        await conn.close()
        await peer.close()
