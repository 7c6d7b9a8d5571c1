"""Kamailio in front of two nodes (issue #20, docs/cluster.md): failover and its own cost.

The Kamailio ``dasan kamailio render`` writes, real, on 127.0.0.2; the two nodes are SIPp UAS
(127.0.0.3, 127.0.0.4) that answer at once, so the numbers are Kamailio's and SIP's, not
Asterisk's (a real node's IVR costs far more per call: docs/benchmarks.md's FastAGI rows).

- Failover: calls arrive at ``BENCH_CLUSTER_RATE``/s; one node is killed with -9. Measured:
  kill -> Kamailio's ``node down`` (a probe or a call noticed), kill -> the first call that had
  been sent to the dead node going on to the survivor (it waited Kamailio's 1.5 s ``fr_timer``:
  the longest extra wait a caller sees), the calls of that load that failed, and how many were
  retried on the survivor.
- Throughput: ``BENCH_CLUSTER_CALLS`` calls (INVITE, 200, ACK, BYE) as fast as SIPp sends
  them (offered rates ``BENCH_CLUSTER_PUSH``, default 500,2000 calls/s), through Kamailio to two
  nodes, and straight to one node; Kamailio's CPU (all its processes, /proc) per call. Every
  process shares the machine's 2 cores: Kamailio's 4 workers compete with the three SIPps.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from bench import report
from bench.measure import children, cpu_seconds
from ivr import datafolder
from ivr.config import Settings
from tests.support.kamailio import (
    KAMAILIO,
    NODE1,
    NODE2,
    SIPP,
    TRUNK,
    Cluster,
    Sipp,
    caller_uac,
    scenario,
)

QUICK = os.environ.get("BENCH_QUICK") == "1"
CALLS = int(os.environ.get("BENCH_CLUSTER_CALLS", "1000" if QUICK else "5000"))
PUSHES = [int(x) for x in os.environ.get("BENCH_CLUSTER_PUSH", "500,2000").split(",")]
RATE = int(os.environ.get("BENCH_CLUSTER_RATE", "50"))
PROBE = int(os.environ.get("BENCH_CLUSTER_PROBE_SECONDS", "2"))
TITLE = "Cluster: Kamailio failover and cost per call (SIPp nodes)"


def _settings(root: Path) -> Settings:
    s = Settings()
    s.data_dir = root / "var"
    s.queues_dir, s.agi.menus_dir = root / "var" / "queues", root / "var" / "menus"
    datafolder.seed(s)
    return s


def _kamailio_cpu(pid: int) -> float:
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in children(pid))


def _first_line_time(sipp: Sipp, word: str, timeout: float) -> float | None:
    """When ``word`` first shows in the SIPp log (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sipp.lines(word):
            return time.monotonic()
        time.sleep(0.005)
    return None


def failover(root: Path) -> list[object]:
    c = Cluster(root, _settings(root), probe_seconds=PROBE)
    try:
        node1, node2 = c.node(NODE1), c.node(NODE2)
        c.kamailio.start()
        warm = c.calls(20)
        assert warm.lines("answered") == 20, "warm-up calls failed"
        survivor_before = node1.lines("invite")
        seconds = 4 * PROBE + 4
        count = RATE * seconds
        load = Sipp("failover-load", scenario(root, "failover-load", caller_uac("120", 200)), root / "failover-load.log",
                    [f"{c.kamailio.host}:{c.kamailio.port}", "-i", TRUNK, "-p", "0", "-m", str(count), "-r", str(RATE)]).start()
        c.procs.append(load)
        # let the load reach both nodes, then kill one
        before_kill = node2.lines("invite")
        deadline = time.monotonic() + 10
        while node2.lines("invite") == before_kill and time.monotonic() < deadline:
            time.sleep(0.005)
        mark = len(c.kamailio.text())
        killed = time.monotonic()
        node2.kill()
        # a call sent to the dead node waits fr_timer, then goes to the survivor
        first = None
        while time.monotonic() < killed + 30:
            if "retried on node" in c.kamailio.text()[mark:]:
                first = time.monotonic()
                break
            time.sleep(0.002)
        c.kamailio.wait_log(rf"node down .*sip:{NODE2}:", after=mark, timeout=PROBE * 10)
        detected = time.monotonic()
        load.wait(seconds + 120)
        retried = c.kamailio.text()[mark:].count("retried on node")
        return ["kill -9 of one node, SIPp nodes", PROBE, round((detected - killed) * 1000),
                round(((first or killed) - killed) * 1000) if first else None,
                count, load.lines("answered"), count - load.lines("answered"), retried,
                node1.lines("invite") - survivor_before]
    finally:
        c.close()


def throughput(root: Path, through_kamailio: bool, push_rate: int) -> list[object]:
    c = Cluster(root, _settings(root), probe_seconds=PROBE)
    try:
        nodes = [c.node(NODE1), c.node(NODE2)] if through_kamailio else [c.node(NODE1)]
        target = f"{c.kamailio.host}:{c.kamailio.port}" if through_kamailio else f"{NODE1}:{c.node_ports[NODE1]}"
        cpu0 = 0.0
        if through_kamailio:
            c.kamailio.start()
            assert c.kamailio.proc is not None
            cpu0 = _kamailio_cpu(c.kamailio.proc.pid)
        name = f"push-{'k' if through_kamailio else 'direct'}"
        started = time.monotonic()
        push = Sipp(name, scenario(root, name, caller_uac("120", 0)), root / f"{name}.log",
                    [target, "-i", TRUNK, "-p", "0", "-m", str(CALLS), "-r", str(push_rate), "-l", "500"]).start()
        c.procs.append(push)
        push.wait(600)
        elapsed = time.monotonic() - started
        answered = push.lines("answered")
        cpu = None
        if through_kamailio and c.kamailio.proc is not None:
            cpu = (_kamailio_cpu(c.kamailio.proc.pid) - cpu0) / max(1, answered) * 1000
        return ["through Kamailio, 2 nodes" if through_kamailio else "straight to 1 node", push_rate, CALLS, answered,
                CALLS - answered, answered / elapsed, cpu, "/".join(str(n.lines("invite")) for n in nodes)]
    finally:
        c.close()


def main() -> None:
    report.section(TITLE, __doc__ or "")
    if KAMAILIO is None or SIPP is None:
        report.note("skipped: kamailio or sipp is not installed (Debian packages kamailio, sip-tester)")
        return
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        rows = [failover(root / "failover")]
        report.table(["case", "probe s", "kill -> node down ms", "kill -> first retried call sent on ms", "calls",
                      "answered", "failed", "retried on survivor", "calls on survivor after kill"], rows,
                     caption=f"Failover at {RATE} calls/s (each call held 200 ms)")
        rows = []
        for rate in PUSHES:
            for through_kamailio in (False, True):
                where = root / f"{'kamailio' if through_kamailio else 'direct'}-{rate}"
                where.mkdir()
                rows.append(throughput(where, through_kamailio, rate))
            direct, through = rows[-2][5], rows[-1][5]
            rows[-1].append(f"{through / direct:.2f}" if isinstance(direct, float) and isinstance(through, float) else None)
            rows[-2].append("")
        report.table(["path", "offered calls/s", "calls", "answered", "failed", "answered calls/s (over the whole run, failed calls' timeouts included)",
                      "Kamailio CPU ms/call", "calls per node", "through / straight"], rows,
                     caption="Throughput: SIPp callers at the offered rate, at most 500 calls up at once")
        if shutil.which("asterisk") is None:
            report.note("real Asterisk nodes: skipped, no `asterisk` binary installed")
        else:
            real = real_nodes(root / "real")
            report.table(["case", "probe s", "kill -> node down ms", "kill -> first new call answered ms",
                          "new calls", "answered", "failed", "calls up at the kill that did not end normally"], real,
                         caption="Failover with real Asterisk nodes (calls held 3 s up at the kill; new calls at 10/s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()


def real_nodes(root: Path) -> list[list[object]]:
    """Failover with two real Asterisk nodes (``dasan cluster up --no-dasan``'s layout): no IVR
    runs, so each call is answered by the node's dialplan (which then tries both FastAGI
    servers and the fallback queue). A node of a cluster admits SIP from Kamailio only, so
    "straight to one node" is measured on the SIPp nodes above, not here."""
    from ivr.cluster.local import LocalCluster
    from ivr.config import AsteriskNode
    from tests.support.kamailio import free_udp_port

    settings = _settings(root)
    k = settings.cluster.kamailio
    k.host, k.port, k.probe_seconds, k.trunk_match = "127.0.0.2", free_udp_port("127.0.0.2"), PROBE, [f"{TRUNK}/32"]
    settings.cluster.asterisk_nodes = [
        AsteriskNode(name=f"ast{i + 1}", sip_host=host, sip_port=free_udp_port(host), ami_host=host,
                     ami_port=free_udp_port(host)) for i, host in enumerate((NODE1, NODE2))]
    settings.ami.secret = "bench-ami-secret-cluster"
    local = LocalCluster(settings, root / "cluster")
    local.root.mkdir(parents=True)
    rows: list[list[object]] = []
    callers: list[Sipp] = []
    try:
        local.start()
        target = f"{k.host}:{k.port}"

        # failover: calls up on both nodes, kill -9 of node 2, then new calls
        background = Sipp("real-up", scenario(root, "real-up", caller_uac("120", 3000)), root / "real-up.log",
                          [target, "-i", TRUNK, "-p", "0", "-m", "20", "-r", "10", "-max_retrans", "3"]).start()
        callers.append(background)
        log = local.root / "kamailio.log"
        deadline = time.monotonic() + 30
        while not all(f"to node=sip:{host}:" in log.read_text(errors="replace") for host in (NODE1, NODE2)):
            assert time.monotonic() < deadline, "calls did not reach both nodes"
            time.sleep(0.01)
        mark = len((local.root / "kamailio.log").read_text(errors="replace"))
        victim = local.processes[2]
        killed = time.monotonic()
        victim.proc.kill()
        fresh = Sipp("real-new", scenario(root, "real-new", caller_uac("120", 200)), root / "real-new.log",
                     [target, "-i", TRUNK, "-p", "0", "-m", "20", "-r", "10", "-max_retrans", "3"]).start()
        callers.append(fresh)
        first = _first_line_time(fresh, "answered", 30)
        down = None
        deadline = time.monotonic() + PROBE * 10
        while down is None and time.monotonic() < deadline:
            if re.search(rf"node down .*sip:{NODE2}:", (local.root / "kamailio.log").read_text(errors="replace")[mark:]):
                down = time.monotonic()
            time.sleep(0.005)
        fresh.wait(120)
        background.wait(120)
        rows.append(["kill -9 of one of 2 real nodes", PROBE,
                     round((down - killed) * 1000) if down else None,
                     round((first - killed) * 1000) if first else None,
                     20, fresh.lines("answered"), 20 - fresh.lines("answered"),
                     20 - background.lines("ended")])
    finally:
        for caller in callers:
            caller.kill()
        local.stop()
    return rows
