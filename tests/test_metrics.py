"""/metrics (issue #18): off by default, then only from allowed addresses and with the token;
the figures come from the real database, the AMI bridge's live state, live.ami and the
instruments the AGI server and the AMI bridge update."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.agi.protocol import AgiStream
from ivr.ami.models import AgentState, LiveCall
from ivr.ami.service import ami_status
from ivr.db.group_commit import GroupCommit
from ivr.db.models import Channel, Contact
from tests.support.console import Console
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


async def test_metrics_tell_the_live_state(console: Console) -> None:
    ctx = console.ctx
    ctx.settings.metrics.enabled = True  # loopback allowed by default, no token
    now = datetime.now(UTC)
    async with ctx.db.transaction() as session:
        session.add_all([
            LiveCall(linkedid="m-1", queue="general-ko", state="queued", joined_at=now - timedelta(seconds=42)),
            LiveCall(linkedid="m-2", queue="general-ko", state="queued", joined_at=now - timedelta(seconds=5)),
            AgentState(username="kim.minji", extension="agent1001", logged_in=True, paused=False,
                       queues={"general-ko": 0}, device_status=1, in_call=False, state="available", since=now),
        ])
        session.add(Contact(channel=Channel.voice, started_at=now))
    await ctx.bus.publish("live.ami", ami_status("connected", True))

    async def heard() -> bool:
        return samples((await scrape(console))[1]).get(("dasan_ami_connected", ())) == 1.0

    await eventually(heard, "the web process hearing live.ami")
    values = samples((await scrape(console))[1])
    assert values[("dasan_queue_waiting_calls", (("queue", "general-ko"),))] == 2
    assert values[("dasan_queue_longest_wait_seconds", (("queue", "general-ko"),))] >= 42
    assert values[("dasan_agents", (("state", "available"),))] == 1
    assert values[("dasan_contacts_total", (("channel", "voice"),))] >= 1
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
