"""Kamailio as rendered by ``dasan kamailio render``, for real, on loopback addresses: two SIPp
UAS stand in for the Asterisk nodes, SIPp UACs for the trunk, the nodes ringing agents and the
agents' phones. Needs the Debian packages kamailio and sip-tester (``make test`` installs them).

Kamailio 127.0.0.2, nodes 127.0.0.3 and 127.0.0.4, phones 127.0.0.5, trunk 127.0.0.1.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.config import Settings
from ivr.kamailio.render import render, write
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
    dispatcher_states,
    free_udp_port,
    overlapping_calls,
    register_uac,
    scenario,
    wait_for,
)

PROBE_SECONDS = 1


@pytest.fixture(autouse=True)
def _tools() -> None:
    if KAMAILIO is None or SIPP is None:
        pytest.fail("kamailio and sipp are needed (Debian packages kamailio, sip-tester: make debs-test)")


@pytest.fixture
def cluster(tmp_path: Path, settings: Settings) -> Iterator[Cluster]:
    c = Cluster(tmp_path, settings, probe_seconds=PROBE_SECONDS)
    try:
        yield c
    finally:
        c.close()


def test_rendered_configuration_passes_kamailio_check(cluster: Cluster) -> None:
    check = subprocess.run([KAMAILIO, "-c", "-f", str(cluster.kamailio.config)],  # type: ignore[list-item]
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "config file ok" in check.stdout + check.stderr


def test_every_algorithm_and_several_trunk_networks_pass_the_check(cluster: Cluster) -> None:
    k = cluster.settings.cluster.kamailio
    k.algorithm, k.trunk_match, k.probe_failures = "round_robin", ["127.0.0.1/32", "10.1.0.0/16", "192.0.2.7"], 3
    conf = cluster.root / "round-robin"
    write(render(cluster.settings, conf), conf)
    text = (conf / "kamailio.cfg").read_text()
    assert 'ds_select_dst("1", "4")' in text and "src_ip == 10.1.0.0/16 || src_ip == 192.0.2.7/32" in text
    check = subprocess.run([KAMAILIO, "-c", "-f", str(conf / "kamailio.cfg")],  # type: ignore[list-item]
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_calls_spread_fail_over_and_come_back(cluster: Cluster) -> None:
    node1, node2 = cluster.node(NODE1), cluster.node(NODE2)
    cluster.kamailio.start()
    # both nodes answer the dispatcher's OPTIONS probes
    wait_for(lambda: "options" in (cluster.root / "node.xml").read_text() and all(
        p.proc is not None and p.proc.poll() is None for p in (node1, node2)), "nodes running")
    # kamcmd over the rendered control socket: both nodes active in the dispatcher
    wait_for(cluster.nodes_active, "both nodes active in Kamailio's dispatcher")

    first = cluster.calls(20)
    assert first.lines("answered") == 20 and first.lines("refused") == 0
    assert node1.lines("invite") > 0 and node2.lines("invite") > 0, "calls go to both nodes"
    assert node1.lines("invite") + node2.lines("invite") == 20

    # kill -9 one node: calls placed before the probes notice are retried on the other
    mark = len(cluster.kamailio.text())
    node2.kill()
    before_detection = cluster.calls(6)
    assert before_detection.lines("answered") == 6, "a call sent to the dead node is retried on the live one"
    cluster.kamailio.wait_log(rf"node down .*sip:{NODE2}:", after=mark, timeout=PROBE_SECONDS * 10)
    states = dispatcher_states(cluster.settings.cluster.kamailio.ctl_socket)
    assert states[f"sip:{NODE2}:{cluster.node_ports[NODE2]}"][0] in "IT", states  # inactive or trying
    assert states[f"sip:{NODE1}:{cluster.node_ports[NODE1]}"][0] == "A", states

    on_one = node1.lines("invite")
    after_detection = cluster.calls(20)
    assert after_detection.lines("answered") == 20 and after_detection.lines("refused") == 0
    assert node1.lines("invite") == on_one + 20, "every new call went straight to the survivor"

    # the node comes back: the probes see it and it takes calls again
    mark = len(cluster.kamailio.text())
    back = cluster.node(NODE2)
    cluster.kamailio.wait_log(rf"node up .*sip:{NODE2}:", after=mark, timeout=PROBE_SECONDS * 10)
    wait_for(cluster.nodes_active, "the returned node active again")
    again = cluster.calls(20)
    assert again.lines("answered") == 20
    assert back.lines("invite") > 0, "the returned node takes calls again"


def _passwords(settings: Settings) -> dict[str, str]:
    q = load_queues(settings.queues_dir)
    by_user = sip_passwords(settings, q.agents)
    return {a.extension: by_user[a.username] for a in q.agents}


def test_agents_register_with_their_password_only(cluster: Cluster) -> None:
    cluster.kamailio.start()
    extension, password = next(iter(_passwords(cluster.settings).items()))
    good = cluster.run(register_uac(extension, password), "-m", "1", host=PHONES)
    assert good.lines("registered") == 1 and good.lines("rejected") == 0
    cluster.kamailio.wait_log(rf"registered user={extension} from={PHONES}")

    assert "register refused" not in cluster.kamailio.text()  # the first, unauthenticated REGISTER is no refusal
    mark = len(cluster.kamailio.text())
    bad = cluster.run(register_uac(extension, password + "x"), "-m", "1", host=PHONES)
    assert bad.lines("rejected") == 1 and bad.lines("registered") == 0
    cluster.kamailio.wait_log(rf"register refused user={extension} from={PHONES} reason=-2", after=mark)

    mark = len(cluster.kamailio.text())
    stranger = cluster.run(register_uac("nobody99", password), "-m", "1", host=PHONES)
    assert stranger.lines("rejected") == 1
    cluster.kamailio.wait_log(rf"register refused user=nobody99 from={PHONES} reason=-3", after=mark)


BURSTS = 3


def test_one_agent_one_call_across_nodes(cluster: Cluster) -> None:
    """Two "nodes" ring the same agent with 20 INVITEs at once, in several bursts: each burst
    rings the phone exactly once, the others get 486 (the profile check and mark are under one
    cfgutils lock; without ``lock_set_size`` that lock was a no-op and a burst sometimes rang the
    phone twice)."""
    cluster.kamailio.start()
    extension, password = next(iter(_passwords(cluster.settings).items()))
    phone_port = free_udp_port(PHONES)
    phone = Sipp("phone", scenario(cluster.root, "phone", agent_uas(ring_ms=1500)), cluster.root / "phone.log",
                 ["-i", PHONES, "-p", str(phone_port)]).start()
    cluster.procs.append(phone)
    reg = cluster.run(register_uac(extension, password, contact_port=phone_port), "-m", "1", host=PHONES)
    assert reg.lines("registered") == 1

    for burst in range(1, BURSTS + 1):
        # both "nodes" ring the same agent at once, 10 INVITEs each, as fast as they can
        uacs = [Sipp(f"ring-{burst}-{host}", scenario(cluster.root, f"ring-{burst}-{host}", caller_uac(extension, 200)),
                     cluster.root / f"ring-{burst}-{host}.log",
                     [f"{KAM_HOST}:{cluster.kamailio.port}", "-i", host, "-p", str(free_udp_port(host)),
                      "-m", "10", "-r", "200", "-l", "10"]).start() for host in (NODE1, NODE2)]
        cluster.procs.extend(uacs)
        for uac in uacs:
            uac.wait(60)
        answered = sum(u.lines("answered") for u in uacs)
        busy = sum(u.lines("busy") for u in uacs)
        assert phone.lines("invite") == burst, f"burst {burst}: the phone was offered exactly one call"
        assert (answered, busy) == (1, 19), f"burst {burst}"
        wait_for(lambda n=burst: phone.lines("bye") == n, f"burst {burst}: the answered call's BYE through Kamailio")
    assert overlapping_calls(phone.log) == 1

    # the call is over: the agent can be rung again
    after = cluster.run(caller_uac(extension, 100), "-m", "1", host=NODE1)
    assert after.lines("answered") == 1
    assert phone.lines("invite") == BURSTS + 1
    # no script function failed (a lock without a lock set only logs an ERROR and goes on)
    errors = [line for line in cluster.kamailio.text().splitlines() if " ERROR: " in line]
    assert errors == [], errors[:5]
