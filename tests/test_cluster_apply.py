"""``dasan asterisk apply`` on a cluster (issue #20): each Asterisk node gets its own rendered
files in its own folder and its reloads over its own AMI. Real sockets: an ``AmiPeer`` (Asterisk
22's AMI as captured) listens on each node's AMI address, 127.0.0.3 and 127.0.0.4."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from ivr.asterisk.apply import ApplyError, read_pending
from ivr.asterisk.render import RenderError
from ivr.asterisk.render import render as render_asterisk
from ivr.bus import MemoryBus
from ivr.cli import main
from ivr.cluster.apply import apply_everywhere, apply_nodes
from ivr.config import AsteriskNode, DasanNode, Settings
from ivr.console.admin import apply_to_asterisk
from ivr.context import AppContext
from ivr.db import Database
from tests.support.ami_peer import AmiPeer
from tests.support.kamailio import NODE1, NODE2, free_udp_port

HOSTS = {"ast1": NODE1, "ast2": NODE2}


def reloads(peer: AmiPeer) -> list[str]:
    return [a.get("Module", "") for a in peer.actions if a.get("Action") == "Reload"]


@pytest.fixture
async def peers(settings: Settings, tmp_path: Path) -> AsyncIterator[dict[str, AmiPeer]]:
    """Two nodes in ``cluster:``, each with its folder under tmp_path and an AMI peer."""
    started = {name: AmiPeer(settings.ami.username, settings.ami.secret) for name in HOSTS}
    ports = {name: await peer.start(HOSTS[name]) for name, peer in started.items()}
    settings.cluster.kamailio.host = "127.0.0.2"
    settings.cluster.asterisk_nodes = [
        AsteriskNode(name=name, sip_host=host, sip_port=free_udp_port(host), ami_host=host, ami_port=ports[name],
                     config_dir=tmp_path / name / "etc") for name, host in HOSTS.items()]
    settings.cluster.dasan_nodes = [DasanNode(name="d1", agi_port=4573), DasanNode(name="d2", agi_port=4574)]
    settings.asterisk.config_dir = tmp_path / "not-a-node"
    try:
        yield started
    finally:
        for peer in started.values():
            await peer.close()


async def test_every_node_gets_its_own_files_and_reloads(settings: Settings, tmp_path: Path,
                                                         peers: dict[str, AmiPeer]) -> None:
    # ast1 was installed with `render --node ast1` (asterisk.conf with its systemname); ast2 not
    etc1 = tmp_path / "ast1" / "etc"
    etc1.mkdir(parents=True)
    (etc1 / "asterisk.conf").write_text(render_asterisk(settings, node="ast1")["asterisk.conf"])

    done = await apply_nodes(settings)
    assert [d.node for d in done] == ["ast1", "ast2"] and all(d.ok for d in done)
    for d in done:
        etc = tmp_path / d.node / "etc"
        assert d.config_dir == etc and d.result is not None
        pjsip = (etc / "pjsip.conf").read_text()
        assert f"bind = {HOSTS[d.node]}:" in pjsip, "the node's own SIP address"
        assert "bindaddr = " + HOSTS[d.node] in (etc / "manager.conf").read_text()
        assert "IVR_HOST2=127.0.0.1:4574" in (etc / "extensions.conf").read_text()
        # each node's reloads went to its own AMI, as the system user
        assert set(reloads(peers[d.node])) == set(d.result.reloaded) >= {"res_pjsip.so", "app_queue.so",
                                                                          "pbx_config.so"}
        assert {a["Username"] for a in peers[d.node].actions if a.get("Action") == "Login"} == {
            f"{settings.ami.username}-system"}
        assert read_pending(etc) == []
    assert (etc1 / "asterisk.conf").read_text().count("systemname = ast1") == 1, "apply leaves asterisk.conf"
    assert not (tmp_path / "ast2" / "etc" / "asterisk.conf").exists()
    warned = {d.node: d.warnings for d in done}
    assert warned["ast1"] == [] and "systemname = ast2" in warned["ast2"][0]
    assert not (tmp_path / "not-a-node").exists(), "nothing rendered for a single Asterisk"

    # the same YAML again: nothing to write, nothing to reload on either node
    before = {name: len(reloads(peer)) for name, peer in peers.items()}
    again = await apply_nodes(settings)
    assert all(d.result is not None and d.result.changed == [] and d.result.reloaded == [] for d in again)
    assert {name: len(reloads(peer)) for name, peer in peers.items()} == before


async def test_a_node_away_does_not_stop_the_others_and_gets_its_reloads_later(
        settings: Settings, tmp_path: Path, peers: dict[str, AmiPeer]) -> None:
    await peers["ast2"].close()  # node 2's Asterisk is away
    with pytest.raises(ApplyError, match=r"ast2: AMI 127\.0\.0\.4"):
        await apply_everywhere(settings)
    assert "app_queue.so" in set(reloads(peers["ast1"])), "node 1 was applied all the same"
    waiting = read_pending(tmp_path / "ast2" / "etc")
    assert "app_queue.so" in waiting and "res_pjsip.so" in waiting, "node 2's files written, reloads pending"
    assert read_pending(tmp_path / "ast1" / "etc") == []

    back = AmiPeer(settings.ami.username, settings.ami.secret)  # node 2 is back, on its port
    await back.start(NODE2, settings.cluster.node("ast2").ami_port)
    try:
        merged = await apply_everywhere(settings)
        assert merged.changed == [] and set(merged.reloaded) == {f"ast2/{m}" for m in waiting}
        assert set(reloads(back)) == set(waiting) and read_pending(tmp_path / "ast2" / "etc") == []
    finally:
        await back.close()


async def test_the_console_applies_to_every_node(settings: Settings, sqlite_url: str, tmp_path: Path,
                                                 peers: dict[str, AmiPeer]) -> None:
    console = AppContext(settings, Database(sqlite_url), MemoryBus())
    try:
        status, message = await apply_to_asterisk(console, "admin")
    finally:
        await console.db.dispose()
    assert status == "applied", message
    assert "ast1/pjsip.conf" in message and "ast2/app_queue.so" in message
    assert "app_queue.so" in reloads(peers["ast1"]) and "app_queue.so" in reloads(peers["ast2"])


async def test_choosing_nodes_and_what_is_refused(settings: Settings, tmp_path: Path,
                                                  peers: dict[str, AmiPeer]) -> None:
    done = await apply_nodes(settings, ["ast2"], reload=False)
    assert [d.node for d in done] == ["ast2"] and done[0].result is not None and done[0].result.reloaded == []
    assert not (tmp_path / "ast1" / "etc").exists() and peers["ast2"].actions == []
    elsewhere = tmp_path / "elsewhere"
    done = await apply_nodes(settings, ["ast1"], elsewhere, reload=False)
    assert done[0].config_dir == elsewhere and f"bind = {NODE1}:" in (elsewhere / "pjsip.conf").read_text()

    with pytest.raises(RenderError, match="no Asterisk node 'ast9'"):
        await apply_nodes(settings, ["ast9"])
    with pytest.raises(RenderError, match="one --node"):
        await apply_nodes(settings, None, elsewhere)
    for node in settings.cluster.asterisk_nodes:
        node.config_dir = None  # both default to asterisk.config_dir: refused before writing
    with pytest.raises(RenderError, match="ast1, ast2 would all be written into"):
        await apply_nodes(settings)
    assert not settings.asterisk.config_dir.exists()


async def test_the_command(settings: Settings, tmp_path: Path, peers: dict[str, AmiPeer],
                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dasan.yaml"
    nodes = [n.model_dump(mode="json") for n in settings.cluster.asterisk_nodes]
    config.write_text(yaml.safe_dump({
        "data_dir": str(settings.data_dir), "queues_dir": str(settings.queues_dir),
        "agi": {"menus_dir": str(settings.agi.menus_dir)},
        "asterisk": {"config_dir": str(tmp_path / "not-a-node")}, "ami": {"secret": settings.ami.secret},
        "cluster": {"kamailio": {"host": "127.0.0.2"}, "asterisk_nodes": nodes}}))
    args = ["--config", str(config), "asterisk", "apply"]
    # the command runs its own event loop: in a thread, while the peers answer on this one
    assert await asyncio.to_thread(main, [*args, "--no-reload", "--node", "ast1"]) == 0
    out = capsys.readouterr()
    assert f"[ast1] wrote {tmp_path / 'ast1' / 'etc' / 'pjsip.conf'}" in out.out
    assert "systemname = ast1" in out.err and not (tmp_path / "ast2" / "etc").exists()
    assert peers["ast1"].actions == []
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr()
    assert f"[ast2] wrote {tmp_path / 'ast2'}" in out.out
    assert "[ast1] reloaded app_queue.so" in out.out and "[ast2] reloaded app_queue.so" in out.out
    assert "app_queue.so" in reloads(peers["ast1"]) and "app_queue.so" in reloads(peers["ast2"])
    assert await asyncio.to_thread(main, [*args, "--node", "nope"]) == 2
    assert "no Asterisk node 'nope'" in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*args, "--config-dir", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
