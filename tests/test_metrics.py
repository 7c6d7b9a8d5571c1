"""/metrics (issue #18): off by default, then only from allowed addresses and with the token,
on the web port or on an address of its own in every ``dasan up`` process; the figures come
from the real database (counted past a watermark, never a whole table), the AMI bridge's live
state, live.ami and the instruments the AGI server, the AMI bridge and the group commits update."""

from __future__ import annotations

import asyncio
import math
import re
import signal
import socket
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.agi.protocol import AgiStream
from ivr.ami.models import AgentState, LiveCall
from ivr.ami.service import AmiBridge, ami_status
from ivr.db import Database
from ivr.db.group_commit import GroupCommit
from ivr.db.models import Channel, Contact, Message, Recording
from ivr.web.metrics import MetricsListener
from ivr.web.metrics_figures import LOOKBACK, RowCounter
from tests.support.ami_peer import AmiPeer
from tests.support.console import Console
from tests.support.up import start_up
from tests.support.waiting import eventually

TOKEN = "scrape-token-for-tests-only"


async def scrape(console: Console, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.get(f"{console.url}/metrics", headers=headers) as r:
        return r.status, await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_are_off_then_guarded(console: Console) -> None:
    conf = console.ctx.settings.metrics
    assert (await scrape(console))[0] == 404  # the default: no such page
    conf.enabled, conf.allow = True, ["10.9.9.0/24"]
    assert (await scrape(console))[0] == 404  # loopback is not in the allow list
    conf.allow, conf.token = ["127.0.0.1/32"], TOKEN
    assert (await scrape(console))[0] == 404
    assert (await scrape(console, "wrong"))[0] == 404
    status, text = await scrape(console, TOKEN)
    assert status == 200 and "dasan_queue_waiting_calls" in text
    conf.port = 0  # served on an address of its own: the web port's /metrics is gone
    assert (await scrape(console, TOKEN))[0] == 404


async def test_metrics_tell_the_live_state(console: Console) -> None:
    ctx = console.ctx
    ctx.settings.metrics.enabled = True  # loopback allowed by default, no token
    first = samples((await scrape(console))[1])  # counting begins: the seeded contacts are history
    assert not any(name in ("dasan_contacts_total", "dasan_messages_total") for name, _ in first)
    backlog = {status: first[("dasan_recordings", (("transcription_status", status),))]
               for status in ("pending", "running", "failed", "no_model")}
    assert not any(labels == (("transcription_status", "done"),) for _, labels in first)  # never counted
    now = datetime.now(UTC)
    async with ctx.db.transaction() as session:
        session.add_all([
            LiveCall(linkedid="m-1", queue="general-ko", state="queued", joined_at=now - timedelta(seconds=42)),
            LiveCall(linkedid="m-2", queue="general-ko", state="queued", joined_at=now - timedelta(seconds=5)),
            AgentState(username="kim.minji", extension="agent1001", logged_in=True, paused=False,
                       queues={"general-ko": 0}, device_status=1, in_call=False, state="available", since=now),
        ])
        calls = [Contact(channel=Channel.voice, started_at=now) for _ in range(2)]
        sms = Contact(channel=Channel.sms, started_at=now)
        session.add_all([*calls, sms])
        await session.flush()
        session.add_all([Message(contact_id=sms.id, direction="in", channel=Channel.sms, body="문의"),
                         Message(contact_id=sms.id, direction="out", channel=Channel.sms, body="답변"),
                         Message(contact_id=sms.id, direction="out", channel=Channel.sms, body="접수")])
        session.add_all([Recording(contact_id=calls[0].id, path="m/1.wav", transcription_status="pending"),
                         Recording(contact_id=calls[1].id, path="m/2.wav", transcription_status="running"),
                         Recording(contact_id=calls[1].id, path="m/3.wav", transcription_status="done")])
    await ctx.bus.publish("live.ami", ami_status("connected", True))

    async def heard() -> bool:
        return samples((await scrape(console))[1]).get(("dasan_ami_connected", ())) == 1.0

    await eventually(heard, "the web process hearing live.ami")
    values = samples((await scrape(console))[1])
    assert values[("dasan_queue_waiting_calls", (("queue", "general-ko"),))] == 2
    assert values[("dasan_queue_longest_wait_seconds", (("queue", "general-ko"),))] >= 42
    assert values[("dasan_agents", (("state", "available"),))] == 1
    assert values[("dasan_contacts_total", (("channel", "voice"),))] == 2
    assert values[("dasan_contacts_total", (("channel", "sms"),))] == 1
    assert values[("dasan_messages_total", (("direction", "in"),))] == 1
    assert values[("dasan_messages_total", (("direction", "out"),))] == 2
    assert values[("dasan_recordings", (("transcription_status", "pending"),))] == backlog["pending"] + 1
    assert values[("dasan_recordings", (("transcription_status", "running"),))] == backlog["running"] + 1
    assert values[("dasan_recordings", (("transcription_status", "failed"),))] == backlog["failed"]
    lag = values[("dasan_bus_lag_seconds", ())]
    assert not math.isnan(lag) and lag >= 0

    await ctx.bus.publish("live.ami", ami_status("connecting", False))

    async def down() -> bool:
        return samples((await scrape(console))[1]).get(("dasan_ami_connected", ())) == 0.0

    await eventually(down, "the AMI bridge reporting Asterisk down")


async def test_agi_command_latency_lands_in_the_histogram(console: Console) -> None:
    """A FastAGI stream on a real socket; this side plays Asterisk (env block, then replies)."""
    console.ctx.settings.metrics.enabled = True
    loop = asyncio.get_running_loop()
    streams: list[AgiStream] = []

    def factory() -> AgiStream:
        streams.append(AgiStream(timeout=5))
        return streams[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        writer.write(b"agi_network: yes\nagi_network_script: main\n\n")
        await eventually(lambda: streams, "the FastAGI connection")
        await streams[0].read_env(5)
        before = REGISTRY.get_sample_value("dasan_agi_command_seconds_count", {"command": "ANSWER"}) or 0.0
        answer = asyncio.create_task(streams[0].command("ANSWER"))
        assert await reader.readline() == b"ANSWER\n"
        writer.write(b"200 result=0\n")
        assert (await answer).code == 200
        assert REGISTRY.get_sample_value("dasan_agi_command_seconds_count", {"command": "ANSWER"}) == before + 1
    finally:
        writer.close()
        server.close()
    values = samples((await scrape(console))[1])
    assert values[("dasan_agi_command_seconds_count", (("command", "ANSWER"),))] >= 1


async def test_group_commit_batch_sizes_are_counted(console: Console) -> None:
    """Five writes submitted at once share commits on the real database; /metrics shows them."""
    console.ctx.settings.metrics.enabled = True

    async def run(session: AsyncSession, items: list[int]) -> list[int]:
        await session.execute(text("SELECT 1"))
        return items

    group: GroupCommit[int] = GroupCommit(console.ctx.db, run, name="metrics-test", threaded=False)
    before = REGISTRY.get_sample_value("dasan_group_commit_batch_writes_sum", {"writer": "metrics-test"}) or 0.0
    assert await asyncio.gather(*(group.submit(i) for i in range(5))) == list(range(5))
    await group.flush()
    assert REGISTRY.get_sample_value("dasan_group_commit_batch_writes_sum", {"writer": "metrics-test"}) == before + 5
    values = samples((await scrape(console))[1])
    assert values[("dasan_group_commit_batch_writes_sum", (("writer", "metrics-test"),))] >= 5


async def test_counters_read_only_new_rows_and_count_late_commits_once(db: Database) -> None:
    """Ids handed out before commit: a row that becomes visible after a higher id was counted is
    counted at the next scrape, once; a row far below the watermark is history."""
    counter = RowCounter(Contact.id, Contact.channel)

    async def add(*ids: int, channel: Channel = Channel.voice) -> None:
        async with db.transaction() as session:
            session.add_all([Contact(id=i, channel=channel) for i in ids])

    await add(1, 2, 3)
    async with db.session() as session:
        assert await counter.read(session) == {}  # counting begins at id 3
        await add(5, channel=Channel.sms)  # id 4 is still in a transaction elsewhere
        assert await counter.read(session) == {"sms": 1}
        assert counter.missing == {4}
        await add(4)
        assert await counter.read(session) == {"sms": 1, "voice": 1}
        assert await counter.read(session) == {"sms": 1, "voice": 1}  # never twice
        await add(6 + LOOKBACK + 1)  # a jump: only the last LOOKBACK ids below it are waited for
        assert await counter.read(session) == {"sms": 1, "voice": 2}
        assert min(counter.missing) == 8 and len(counter.missing) == LOOKBACK - 1
        await add(6)  # gave up on: below the window
        assert await counter.read(session) == {"sms": 1, "voice": 2}
        await add(8, channel=Channel.chat)
        assert await counter.read(session) == {"sms": 1, "voice": 2, "chat": 1}


async def test_metrics_on_an_address_of_their_own(console: Console) -> None:
    """metrics.port set: the listener serves this process's instruments, the site's figures
    only where the web service runs (it hears live.ami itself); the same access rules hold."""
    conf = console.ctx.settings.metrics
    conf.enabled, conf.port = True, 0
    listeners = [MetricsListener(console.ctx, site_figures=site) for site in (False, True)]
    try:
        urls = [(await listener.start())[0] for listener in listeners]
        assert all(url.startswith("http://127.0.0.1:") and url.endswith("/metrics") for url in urls)
        await console.ctx.bus.publish("live.ami", ami_status("connected", True))
        async with aiohttp.ClientSession() as http:
            async def get(url: str, token: str | None = None) -> tuple[int, str]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.get(url, headers=headers) as r:
                    return r.status, await r.text()

            status, own = await get(urls[0])
            assert status == 200 and "dasan_agi_sessions_total" in own and "dasan_queue_waiting_calls" not in own

            async def heard() -> bool:
                return samples((await get(urls[1]))[1]).get(("dasan_ami_connected", ())) == 1.0

            await eventually(heard, "the metrics listener hearing live.ami")
            assert "dasan_queue_waiting_calls" in (await get(urls[1]))[1]
            assert (await scrape(console))[0] == 404  # not on the web port any more
            conf.token = TOKEN
            assert (await get(urls[0]))[0] == 404 and (await get(urls[0], TOKEN))[0] == 200
            conf.allow = ["10.9.9.0/24"]
            assert (await get(urls[0], TOKEN))[0] == 404
    finally:
        for listener in listeners:
            await listener.stop()


def test_a_service_run_alone_serves_its_own_metrics(tmp_path: Path) -> None:
    """``dasan up --only agi`` with metrics.port: the AGI latency of a call it served is at its
    own /metrics, beside the address it prints; no web service, so no site figures."""
    proc, output = start_up(tmp_path, "--only", "agi", DASAN__METRICS__ENABLED="true", DASAN__METRICS__PORT="0")
    try:
        metrics_url = re.search(r"dasan: metrics\s+(http://\S+/metrics)", output)
        agi = re.search(r"dasan: agi\s+\S*?(\d+\.\d+\.\d+\.\d+):(\d+)", output)
        assert metrics_url and agi, output
        with socket.create_connection((agi.group(1), int(agi.group(2))), timeout=10) as call:
            call.sendall(b"agi_network: yes\nagi_network_script: main\nagi_uniqueid: 1700000000.77\n"
                         b"agi_callerid: 01012345678\nagi_language: ko\n\n")
            reader = call.makefile("rb")
            for _ in range(3):  # play Asterisk for the first commands, then the caller hangs up
                if not reader.readline():
                    break
                call.sendall(b"200 result=0\n")
        values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and values.get(("dasan_agi_sessions_total", ())) != 1.0:
            with urllib.request.urlopen(metrics_url.group(1), timeout=10) as resp:
                values = samples(resp.read().decode())
            time.sleep(0.1)
        assert values.get(("dasan_agi_sessions_total", ())) == 1.0, values
        answered = sum(v for (name, _), v in values.items() if name == "dasan_agi_command_seconds_count")
        assert answered >= 1, values
        assert not any(name == "dasan_queue_waiting_calls" for name, _ in values)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest


def test_a_taken_metrics_port_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, output = start_up(tmp_path, "--only", "agi", DASAN__METRICS__ENABLED="true",
                                DASAN__METRICS__PORT=str(port))
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, output + rest
    assert (f"dasan: metrics cannot listen on 127.0.0.1:{port}: the port is in use; set metrics.port in the "
            "configuration (or DASAN__METRICS__PORT) to a free port") in output + rest


async def test_ami_commit_batch_sizes_are_counted(console: Console) -> None:
    """The real AMI bridge against the AMI peer (Asterisk 22's protocol): the events it commits
    land in the batch-size histogram."""
    ctx = console.ctx
    peer = AmiPeer(ctx.settings.ami.username, ctx.settings.ami.secret)
    ctx.settings.ami.port = await peer.start()
    before = REGISTRY.get_sample_value("dasan_ami_commit_batch_events_sum") or 0.0
    bridge = AmiBridge(ctx, metrics_interval=0.05)
    await bridge.start()
    try:
        await peer.wait_login(1)
        await eventually(lambda: bridge.resyncs >= 1, "the bridge's first resync")
        await peer.emit({"Event": "Newchannel", "Channel": "PJSIP/caller-00000001", "Uniqueid": "1700000000.1",
                         "Linkedid": "1700000000.1", "CallerIDNum": "01012345678", "Context": "from-caller",
                         "Exten": "120"})
        await eventually(lambda: (REGISTRY.get_sample_value("dasan_ami_commit_batch_events_sum") or 0.0) > before,
                         "a committed AMI batch")
    finally:
        await bridge.stop()
        await peer.close()
