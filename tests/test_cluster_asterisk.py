"""Two real Asterisk nodes behind the rendered Kamailio (issue #20, docs/cluster.md).

Each node runs ``dasan asterisk render --node`` output from its own directories, on its own
loopback address (127.0.0.3, 127.0.0.4) with its own systemname. The agents' phones (SIPp UAS
on 127.0.0.5) register through Kamailio (127.0.0.2); SIPp callers (127.0.0.1, the trunk) call
120. In the telephony tests no IVR server runs, so each node's dialplan tries both dasan
nodes' FastAGI, then sends the caller to the fallback queue, which rings the agents through
Kamailio. The last test adds two dasan nodes (IVR, AMI bridges, cluster watch) on PostgreSQL
and Redis.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.cluster.local import LocalClusterError, node_layout
from ivr.config import AsteriskNode, DasanNode, Settings
from ivr.queues import load_queues
from ivr.site_secrets import sip_passwords
from tests.support.kamailio import (
    KAM_HOST,
    KAMAILIO,
    NODE1,
    NODE2,
    PHONES,
    SIPP,
    Cluster,
    Sipp,
    agent_uas,
    caller_uac,
    free_udp_port,
    overlapping_calls,
    register_uac,
    scenario,
    sip_options,
    wait_for,
)
from tests.support.waiting import eventually

ASTERISK = shutil.which("asterisk")

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(240),
]


@pytest.fixture(autouse=True)
def _tools() -> None:
    if KAMAILIO is None or SIPP is None:
        pytest.fail("kamailio and sipp are needed (Debian packages kamailio, sip-tester: make debs-test)")


@dataclass
class Node:
    name: str
    root: Path
    conf: Path
    proc: subprocess.Popen[bytes]

    def cli(self, command: str) -> str:
        return subprocess.run([str(ASTERISK), "-C", str(self.conf), "-rx", command],
                              capture_output=True, text=True, timeout=15).stdout

    def queue_log(self) -> list[list[str]]:
        path = self.root / "log" / "queue_log"
        return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []

    def console(self) -> str:
        return (self.root / "asterisk.out").read_text(errors="replace")


def start_node(settings: Settings, name: str, root: Path, rtp_base: int) -> Node:
    """The node laid out by ``ivr.cluster.local`` (what ``dasan cluster up`` starts)."""
    try:
        conf = node_layout(settings, name, root, (rtp_base, rtp_base + 98))
    except LocalClusterError as exc:
        pytest.skip(f"asterisk is installed but not usable here: {exc}")
    out = (root / "asterisk.out").open("wb")
    proc = subprocess.Popen([str(ASTERISK), "-f", "-n", "-C", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    out.close()
    node = Node(name, root, conf, proc)
    wait_for(lambda: proc.poll() is not None or ((root / "run" / "asterisk.ctl").exists()
                                                 and "fully booted" in node.cli("core waitfullybooted")),
             f"Asterisk {name} fully booted", timeout=60)
    if proc.poll() is not None:
        raise AssertionError(f"asterisk {name} exited: {node.console()[-3000:]}")
    return node


def stop_node(node: Node) -> None:
    if node.proc.poll() is None:
        with contextlib.suppress(Exception):
            node.cli("core stop now")
        try:
            node.proc.wait(10)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()


class RealCluster:
    def __init__(self, root: Path, settings: Settings) -> None:
        # in turn, so a handful of calls surely reaches both nodes (weight shares at random)
        settings.cluster.kamailio.algorithm = "round_robin"
        self.k = Cluster(root, settings)  # Kamailio rendered for NODE1/NODE2 at free ports
        c = settings.cluster
        # AMI on each node's own address; IVR servers that are not running (fallback path)
        # each node's own folders and RTP ports, as `dasan asterisk apply` must know them
        base = 20000 + (os.getpid() * 7 % 100) * 200
        c.asterisk_nodes = [
            AsteriskNode(name=name, sip_host=host, sip_port=self.k.node_ports[host], ami_host=host,
                         ami_port=free_udp_port(host), config_dir=root / name / "etc",
                         rtp_start=base + i * 100, rtp_end=base + i * 100 + 98)
            for i, (name, host) in enumerate((("ast1", NODE1), ("ast2", NODE2)))]
        c.dasan_nodes = [DasanNode(name="d1", agi_port=free_udp_port("127.0.0.1")),
                         DasanNode(name="d2", agi_port=free_udp_port("127.0.0.1"))]
        settings.ami.secret = "test-ami-secret-cluster"
        settings.asterisk.moh_dir = root / "moh"
        settings.asterisk.moh_dir.mkdir()
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(settings.asterisk.moh_dir / "tone.wav"),
                        "synth", "3", "sine", "330", "vol", "0.2"], check=True)
        self.nodes = {n.name: start_node(settings, n.name, root / n.name, n.rtp_start or 0)
                      for n in c.asterisk_nodes}
        self.k.kamailio.start()
        # the dispatcher's first probes have found both nodes up (kamcmd over the ctl socket)
        wait_for(self.k.nodes_active, "both nodes active in Kamailio's dispatcher", timeout=30)
        q = load_queues(settings.queues_dir)
        by_user = sip_passwords(settings, q.agents)
        self.passwords = {a.extension: by_user[a.username] for a in q.agents}
        self.phones: dict[str, Sipp] = {}
        self.queues = {a.extension: sorted(a.skills) for a in q.agents}

    def login(self, extension: str) -> None:
        """The agent joins its queues on every node (what the AMI bridge's QueueAdd does)."""
        for node in self.nodes.values():
            for queue in self.queues[extension]:
                node.cli(f"queue add member PJSIP/{extension} to {queue} penalty 0 as {extension}")
            wait_for(lambda n=node: f"PJSIP/{extension}" in n.cli("queue show general-ko")
                     and "Unavailable" not in n.cli("queue show general-ko"), f"{extension} on {node.name}")

    def phone(self, extension: str, ring_ms: int = 300) -> Sipp:
        port = free_udp_port(PHONES)
        phone = Sipp(f"phone-{extension}", scenario(self.k.root, f"phone-{extension}", agent_uas(ring_ms)),
                     self.k.root / f"phone-{extension}.log", ["-i", PHONES, "-p", str(port)]).start()
        self.k.procs.append(phone)
        reg = self.k.run(register_uac(extension, self.passwords[extension], contact_port=port), "-m", "1", host=PHONES)
        assert reg.lines("registered") == 1, f"{extension} could not register through Kamailio"
        self.phones[extension] = phone
        self.login(extension)
        return phone

    def close(self) -> None:
        self.k.close()
        for node in self.nodes.values():
            stop_node(node)


@pytest.fixture
def real(tmp_path: Path, settings: Settings) -> Iterator[RealCluster]:
    cluster = RealCluster(tmp_path, settings)
    try:
        yield cluster
    finally:
        cluster.close()


def _queue_callids(node: Node) -> set[str]:
    return {row[1] for row in node.queue_log() if len(row) > 4 and row[4] == "ENTERQUEUE"}


def _ivr_attempts(real: RealCluster, node: Node) -> int:
    """Calls that reached the node's dialplan: each one tries the (absent) first IVR server."""
    first = real.k.settings.cluster.dasan_nodes[0]
    return node.console().count(f"failed for url 'agi://127.0.0.1:{first.agi_port}/main'")


def test_two_nodes_share_calls_ring_agents_through_kamailio_once(real: RealCluster) -> None:
    phones = [real.phone(ext) for ext in sorted(real.passwords)[:2]]
    # 8 callers at once, each up 4 s: more callers than agents, on both nodes
    calls = real.k.run(caller_uac("120", 4000), "-m", "8", "-r", "20", "-l", "8", timeout=120)
    assert calls.lines("answered") == 8
    ids = {name: _queue_callids(node) for name, node in real.nodes.items()}
    assert ids["ast1"] and ids["ast2"], f"calls reached both nodes: {ids}"
    # uniqueids (and linkedids) carry the node's systemname: they never collide
    assert all(i.startswith("ast1-") for i in ids["ast1"]) and all(i.startswith("ast2-") for i in ids["ast2"])
    # the dialplan tried the second IVR server before the fallback queue
    second = real.k.settings.cluster.dasan_nodes[1]
    for node in real.nodes.values():
        assert f"agi://127.0.0.1:{second.agi_port}/main" in node.console()
    # agents were rung through Kamailio from both nodes, and never had two calls at once
    rung = sum(p.lines("invite") for p in phones)
    assert rung >= 2
    for phone in phones:
        assert overlapping_calls(phone.log) <= 1, f"{phone.name} was offered two calls at once"
    assert "agent busy" in real.k.kamailio.text(), "a node tried a busy agent and Kamailio refused it"


def test_kill_one_node_new_calls_go_to_the_other(real: RealCluster) -> None:
    real.phone(sorted(real.passwords)[0])
    first = real.k.run(caller_uac("120", 2000), "-m", "4", "-r", "10", timeout=60)
    assert first.lines("answered") == 4
    mark = len(real.k.kamailio.text())
    dead = real.nodes["ast2"]
    dead.proc.kill()  # kill -9
    dead.proc.wait()
    during = real.k.run(caller_uac("120", 2000), "-m", "6", "-r", "10", timeout=60)
    assert during.lines("answered") == 6, "calls sent to the dead node were retried on the live one"
    real.k.kamailio.wait_log(rf"node down .*sip:{NODE2}:", after=mark, timeout=15)
    survivor = real.nodes["ast1"]
    before = _ivr_attempts(real, survivor)
    after = real.k.run(caller_uac("120", 2000), "-m", "6", "-r", "10", timeout=60)
    assert after.lines("answered") == 6
    wait_for(lambda: _ivr_attempts(real, survivor) == before + 6, "every new call in the survivor's dialplan")


def test_apply_renders_and_reloads_every_real_node(real: RealCluster) -> None:
    """``dasan asterisk apply`` on the running cluster: what the nodes were started with is what
    apply renders (nothing to write); a queue change is written into each node's folder and
    app_queue reloaded on each node over its own AMI, and both nodes run with it."""
    import asyncio

    from ivr.cluster.apply import apply_nodes

    settings = real.k.settings
    first = asyncio.run(apply_nodes(settings))
    assert [(d.node, d.ok, d.warnings) for d in first] == [("ast1", True, []), ("ast2", True, [])]
    assert all(d.result is not None and d.result.changed == [] for d in first), [d.result for d in first]
    for node in real.nodes.values():
        assert "'rrmemory' strategy" in node.cli("queue show general-ko")
    path = settings.queues_dir / "queues.yaml"
    path.write_text(path.read_text().replace("strategy: rrmemory", "strategy: leastrecent", 1))
    done = asyncio.run(apply_nodes(settings))
    for d in done:
        assert d.ok and d.result is not None, d.unreachable
        assert d.result.changed == ["queues.conf"] and d.result.reloaded == ["app_queue.so"]
        assert d.config_dir == real.nodes[d.node].root / "etc"
        assert "'leastrecent' strategy" in real.nodes[d.node].cli("queue show general-ko")


def test_cluster_up_starts_kamailio_and_the_nodes(settings: Settings, tmp_path: Path) -> None:
    """``dasan cluster up --no-dasan``: Kamailio answers, each node runs with its systemname;
    Ctrl-C stops them all."""
    nodes = [{"name": f"ast{i + 1}", "sip_host": host, "sip_port": free_udp_port(host), "ami_host": host,
              "ami_port": free_udp_port(host)} for i, host in enumerate((NODE1, NODE2))]
    kport = free_udp_port(KAM_HOST)
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(settings.data_dir), "queues_dir": str(settings.queues_dir),
        "agi": {"menus_dir": str(settings.agi.menus_dir)},
        "asterisk": {"moh_dir": str(tmp_path / "moh"), "sounds_dir": str(tmp_path / "sounds")},
        "cluster": {"kamailio": {"host": KAM_HOST, "port": kport}, "asterisk_nodes": nodes}}))
    out = (tmp_path / "up.out").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "--config", str(config), "cluster", "up",
                             "--dir", str(tmp_path / "cluster"), "--no-dasan"], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out.close()
    try:
        wait_for(lambda: proc.poll() is not None or "cluster: ready" in (tmp_path / "up.out").read_text(),
                 "dasan cluster up ready", timeout=120)
        assert proc.poll() is None, (tmp_path / "up.out").read_text()
        assert sip_options(KAM_HOST, kport) == 200
        for node in nodes:
            conf = tmp_path / "cluster" / node["name"] / "etc" / "asterisk.conf"
            settings_text = subprocess.run([str(ASTERISK), "-C", str(conf), "-rx", "core show settings"],
                                           capture_output=True, text=True, timeout=15).stdout
            assert re.search(rf"System name:\s+{node['name']}\b", settings_text), settings_text[:500]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    assert sip_options(KAM_HOST, kport, timeout=0.3) is None, "Kamailio stopped with it"


@dataclass
class DasanRun:
    """One dasan node in this process: its FastAGI IVR, its AMI bridges (one per Asterisk node)
    and its cluster watch, with its own database pool and Redis connection."""

    name: str
    ctx: Any
    agi: Any
    ami: Any
    watch: Any

    async def stop(self) -> list[str]:
        """Stop every service (20 s each); returns the ones that did not stop in time."""
        import asyncio

        hung = []
        for service in (self.watch, self.ami, self.agi):
            try:
                await asyncio.wait_for(service.stop(), 20)
            except TimeoutError:
                hung.append(f"{self.name}.{service.name}")
            except Exception:  # a service that failed is stopped as far as it goes
                pass
        await self.ctx.close()
        return hung


async def start_dasan_node(settings: Settings, node: DasanNode) -> DasanRun:
    from ivr import services
    from ivr.context import AppContext

    mine = settings.model_copy(deep=True)
    mine.agi.host, mine.agi.port = node.agi_host, node.agi_port
    ctx = await AppContext.create(mine, migrate=False)
    run = DasanRun(node.name, ctx, services.build("agi", ctx), services.build("ami", ctx), services.build("cluster", ctx))
    for service in (run.agi, run.ami, run.watch):
        await service.start()
    return run


def quick_ivr(settings: Settings, root: Path) -> None:
    """The site's menus, but a caller who presses nothing reaches a counsellor after one
    2-second wait; every prompt a short tone (a prompt file that is missing makes Asterisk end
    the AGI with AGISTATUS=FAILURE, which the dialplan takes for an unreachable IVR)."""
    main = settings.agi.menus_dir / "main.yaml"
    data = yaml.safe_load(main.read_text())
    data["timeout_seconds"], data["max_failures"] = 2, 1
    main.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    folder = root / "sounds" / "ko" / data.get("sound_folder", "dasan")
    folder.mkdir(parents=True)
    tone = folder / "main-menu.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(tone), "synth", "0.3", "sine", "440",
                    "vol", "0.2"], check=True)
    for prompt in data["prompts"]:
        if prompt != "main-menu":
            shutil.copyfile(tone, folder / f"{prompt}.wav")
    settings.asterisk.sounds_dir = root / "sounds"


async def test_two_dasan_nodes_follow_both_nodes_and_close_a_dead_nodes_calls(settings: Settings, pg_url: str,
                                                                             tmp_path: Path) -> None:
    """Two real Asterisk nodes, Kamailio and two dasan nodes (each its IVR, its AMI bridge per
    Asterisk node and its cluster watch) on one PostgreSQL and one Redis; SIPp callers go through
    the real IVR to the queue; kill -9 of one Asterisk mid-load. Each call that reached the live
    node has exactly one contact; the dead node's calls are closed as lost_with_node (those cut
    in the IVR too: the IVR leaves them open, it cannot know how they ended); no agent is offered
    two calls at once. Then dasan node 1's IVR stops: the live node's new calls go to node 2's."""
    import asyncio

    from sqlalchemy import func, select

    from ivr.cluster.lost import LOST_WITH_NODE
    from ivr.db.models import Contact, ContactEvent

    settings.database.url = pg_url
    settings.bus.backend, settings.bus.prefix = "redis", f"dasan-test-{uuid.uuid4().hex[:10]}"
    settings.ami.enabled = True
    settings.agi.drain_timeout = 2.0
    settings.cluster.watch_seconds, settings.cluster.lost_after_seconds = 0.2, 1.0
    quick_ivr(settings, tmp_path)
    real = await asyncio.to_thread(RealCluster, tmp_path, settings)
    dasan: list[DasanRun] = []
    try:
        for node in settings.cluster.dasan_nodes:
            dasan.append(await start_dasan_node(settings, node))
        for run in dasan:  # every dasan node follows every Asterisk node
            assert len(run.ami.bridges) == 2
            for bridge in run.ami.bridges:
                await asyncio.wait_for(bridge.conn.logged_in.wait(), 30)
        for ext in sorted(real.passwords)[:2]:
            await asyncio.to_thread(real.phone, ext, 300)
        ast1, ast2 = real.nodes["ast1"], real.nodes["ast2"]
        db = dasan[0].ctx.db

        async def contacts(prefix: str = "") -> list[Contact]:
            async with db.session() as s:
                return list((await s.scalars(select(Contact).where(Contact.call_id.like(f"{prefix}%")))).all())

        load = asyncio.create_task(asyncio.to_thread(
            real.k.run, caller_uac("120", 6000), "-m", "16", "-r", "4", "-l", "16", "-max_retrans", "3"))
        async def in_ivr_and_queued() -> bool:
            """Node 2 has a caller in its queue and one still in the IVR's menu (its path
            chose no queue yet); node 1 has calls."""
            in_ivr = [c for c in await contacts("ast2-") if "queue:" not in (c.ivr_path or "") and c.ended_at is None]
            return bool(_queue_callids(ast2)) and bool(in_ivr) and len(await contacts("ast1-")) >= 2

        await eventually(in_ivr_and_queued, "callers in node 2's IVR and queue", timeout=60)
        ast2.proc.kill()  # kill -9
        ast2.proc.wait()
        await load

        async def settled() -> bool:
            rows = await contacts()
            queued1 = _queue_callids(ast1)
            return bool(rows) and all(c.ended_at is not None for c in rows) and queued1 <= {c.call_id for c in rows}

        await eventually(settled, "every contact closed", timeout=90)
        rows = await contacts()
        ids = [c.call_id or "" for c in rows]
        assert len(ids) == len(set(ids)), "two writers (IVR, four AMI bridges) never doubled a contact"
        on1 = {c.call_id: c for c in rows if (c.call_id or "").startswith("ast1-")}
        on2 = {c.call_id: c for c in rows if (c.call_id or "").startswith("ast2-")}
        assert len(on1) + len(on2) == len(rows), "every contact belongs to one node"
        # every call that reached the live node (its queue_log) has its contact, none lost
        assert _queue_callids(ast1) <= set(on1) and on1
        assert not any(c.outcome == LOST_WITH_NODE for c in on1.values())
        # the dead node's calls: closed by the watches, as lost (an answered call keeps answered)
        assert on2 and all(c.outcome in (LOST_WITH_NODE, "answered") for c in on2.values()), {
            k: (c.outcome, c.ivr_path) for k, c in on2.items()}
        # a caller cut in the IVR: the IVR left the call open (no hang-up came), the watch closed it
        assert any((c.ivr_path or "").endswith("link_lost") and c.outcome == LOST_WITH_NODE
                   for c in on2.values()), {k: (c.outcome, c.ivr_path) for k, c in on2.items()}
        async with db.session() as s:
            lost_rows = set((await s.scalars(select(ContactEvent.contact_id).where(
                ContactEvent.kind == LOST_WITH_NODE))).all())
        closed = {i for run in dasan for i in run.watch.watch.closed.get("ast2", [])}
        assert closed == lost_rows and closed <= {c.id for c in on2.values()}
        assert all(c.id in closed for c in on2.values() if c.outcome == LOST_WITH_NODE)
        assert all(not run.watch.watch.closed.get("ast1") for run in dasan)
        for phone in real.phones.values():
            assert overlapping_calls(phone.log) <= 1, f"{phone.name} was offered two calls at once"
        served_by_first = dasan[0].agi.server.served
        assert served_by_first >= len(on1) and dasan[1].agi.server.served == 0

        # dasan node 1's IVR stops: node 1's dialplan takes its new calls to node 2's IVR
        await asyncio.wait_for(dasan[0].agi.stop(), 20)
        tried_first = _ivr_attempts(real, ast1)
        more = await asyncio.to_thread(real.k.run, caller_uac("120", 3000), "-m", "3", "-r", "2", "-l", "3")
        assert more.lines("answered") == 3
        await eventually(lambda: _at_least(_count(contacts("ast1-")), len(on1) + 3), "3 more contacts", timeout=60)
        assert dasan[1].agi.server.served == 3
        assert _ivr_attempts(real, ast1) == tried_first + 3, "each tried dasan node 1's IVR first"
        async with db.session() as s:
            doubled = (await s.execute(select(Contact.call_id).group_by(Contact.call_id)
                                       .having(func.count() > 1))).all()
        assert doubled == []
    finally:
        hung = [name for run in reversed(dasan) for name in await run.stop()]
        await _drop_redis_keys(settings)
        await asyncio.to_thread(real.close)
    assert hung == [], f"services that did not stop: {hung}"


async def _count(rows: Awaitable[list[Any]]) -> int:
    return len(await rows)


async def _drop_redis_keys(settings: Settings) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.bus.redis_url)
    try:
        keys = [k async for k in client.scan_iter(f"{settings.bus.prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n
