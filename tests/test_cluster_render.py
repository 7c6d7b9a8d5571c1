"""The cluster's configuration: ``cluster:`` in dasan.yaml, Kamailio's files and one Asterisk
node's files (``dasan asterisk render --node``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr.asterisk.render import RenderError
from ivr.asterisk.render import render as render_asterisk
from ivr.cli import main
from ivr.config import AsteriskNode, DasanNode, Settings, load_settings
from ivr.kamailio.render import KamailioRenderError, subscriber_table, weight_shares
from ivr.kamailio.render import render as render_kamailio
from ivr.queues import load_queues
from ivr.site_secrets import sip_passwords
from ivr.yamlfile import DataError


def two_nodes(settings: Settings) -> Settings:
    settings.cluster.kamailio.host = "10.0.0.10"
    settings.cluster.asterisk_nodes = [
        AsteriskNode(name="ast1", sip_host="10.0.0.11", ami_host="10.0.0.11", weight=2),
        AsteriskNode(name="ast2", sip_host="10.0.0.12", ami_host="10.0.0.12", weight=1)]
    settings.cluster.dasan_nodes = [DasanNode(name="d1", agi_host="10.0.0.21"),
                                    DasanNode(name="d2", agi_host="10.0.0.22")]
    return settings


def test_cluster_section_from_yaml_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "dasan.yaml"
    path.write_text(yaml.safe_dump({"cluster": {
        "kamailio": {"host": "10.0.0.10", "probe_seconds": 3},
        "asterisk_nodes": [{"name": "ast1", "sip_host": "10.0.0.11"}, {"name": "ast2", "sip_host": "10.0.0.12"}],
        "dasan_nodes": [{"name": "d1"}]}}))
    settings = load_settings(path, environ={})
    assert [n.name for n in settings.cluster.asterisk_nodes] == ["ast1", "ast2"]
    assert settings.cluster.kamailio.probe_seconds == 3 and settings.cluster.enabled

    path.write_text(yaml.safe_dump({"cluster": {"asterisk_nodes": [
        {"name": "ast1", "sip_host": "10.0.0.11"}, {"name": "ast1", "sip_host": "10.0.0.12"}]}}))
    with pytest.raises(DataError, match="ast1 is used twice"):
        load_settings(path, environ={})
    path.write_text(yaml.safe_dump({"cluster": {"asterisk_nodes": [{"name": "bad name", "sip_host": "x"}]}}))
    with pytest.raises(DataError, match="name"):
        load_settings(path, environ={})
    assert not load_settings(None, environ={}).cluster.enabled


def test_kamailio_files(settings: Settings, tmp_path: Path) -> None:
    files = render_kamailio(two_nodes(settings), tmp_path / "k")
    cfg = files["kamailio.cfg"]
    assert "listen=udp:10.0.0.10:5060" in cfg
    assert f'"{(tmp_path / "k" / "dispatcher.list").resolve()}"' in cfg
    assert 'ds_select_dst("1", "9")' in cfg  # weight-based
    assert "src_ip == 127.0.0.1/32" in cfg
    rows = [r for r in files["dispatcher.list"].splitlines() if not r.startswith("#")]
    assert rows == ["1 sip:10.0.0.11:5060 0 0 weight=67;duid=ast1", "1 sip:10.0.0.12:5060 0 0 weight=33;duid=ast2"]
    # the same passwords as the nodes' pjsip.conf, by endpoint name
    q = load_queues(settings.queues_dir)
    by_user = sip_passwords(settings, q.agents)
    for agent in q.agents:
        assert f"{agent.extension}:dasan:{by_user[agent.username]}::" in files["db/subscriber"]
    assert files["db/version"].splitlines()[1] == "subscriber:7"


def test_kamailio_refuses_what_it_cannot_render(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(KamailioRenderError, match="asterisk_nodes is empty"):
        render_kamailio(settings, tmp_path)
    two_nodes(settings).cluster.kamailio.trunk_match = ["not-a-network"]
    with pytest.raises(KamailioRenderError, match="trunk_match"):
        render_kamailio(settings, tmp_path)
    settings.cluster.kamailio.trunk_match = ["10.0.0.1"]
    settings.cluster.asterisk_nodes[0].sip_host = "a b;lr"
    with pytest.raises(KamailioRenderError, match="not an address"):
        render_kamailio(settings, tmp_path)


def test_weight_shares_and_db_text_escaping() -> None:
    assert weight_shares([1, 1, 1]) == [34, 33, 33]
    assert sum(weight_shares([7, 5, 900])) == 100
    assert "1:u:r:a\\:b\\\\c::" in subscriber_table({"u": "a:b\\c"}, "r")


def test_node_configuration(settings: Settings) -> None:
    two_nodes(settings)
    one, two = render_asterisk(settings, node="ast1"), render_asterisk(settings, node="ast2")
    assert "systemname = ast1" in one["asterisk.conf"] and "systemname = ast2" in two["asterisk.conf"]
    pjsip = two["pjsip.conf"]
    assert "bind = 10.0.0.12:5060" in pjsip
    assert "match = 10.0.0.10/32" in pjsip  # the trunk is Kamailio
    assert "permit = 10.0.0.10/255.255.255.255" in pjsip
    q = load_queues(settings.queues_dir)
    for agent in q.agents:
        assert f"contact = sip:{agent.extension}@10.0.0.10:5060" in pjsip
        assert f"auth = {agent.extension}\n" not in pjsip  # Kamailio authenticated the phone
    manager = two["manager.conf"]
    assert "bindaddr = 10.0.0.12" in manager
    assert "permit = 10.0.0.21/32" in manager and "permit = 10.0.0.22/32" in manager
    dialplan = two["extensions.conf"]
    assert "IVR_HOST=10.0.0.21:4573" in dialplan and "IVR_HOST2=10.0.0.22:4573" in dialplan
    first, second = dialplan.index("AGI(agi://${IVR_HOST}/main)"), dialplan.index("AGI(agi://${IVR_HOST2}/main)")
    assert first < dialplan.index('"${AGISTATUS}" != "FAILURE"') < second < dialplan.index("n(fallback)")
    # only an IVR never reached (it sets LANG as it starts) sends the caller to the second one
    assert dialplan.index("same => n,Set(LANG=)") < first
    assert '"${AGISTATUS}" != "FAILURE" | "${LANG}" != ""]?ivr_done' in dialplan
    assert "n(ivr_done),ExecIf($[\"${LANG}\" = \"\"]?Set(LANG=ko))" in dialplan
    # the single-node configuration is unchanged
    single = render_asterisk(settings)
    assert "asterisk.conf" not in single and "kamailio-only" not in single["pjsip.conf"]
    assert "IVR_HOST2" not in single["extensions.conf"]
    with pytest.raises(RenderError, match="no Asterisk node 'ast3'"):
        render_asterisk(settings, node="ast3")


def test_commands(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dasan.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(settings.data_dir), "queues_dir": str(settings.queues_dir),
        "agi": {"menus_dir": str(settings.agi.menus_dir)},
        "cluster": {"asterisk_nodes": [{"name": "ast1", "sip_host": "127.0.0.3"}]}}))
    assert main(["--config", str(config), "kamailio", "render", "--out", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "kamailio.cfg").exists()
    assert (tmp_path / "k" / "db" / "subscriber").stat().st_mode & 0o077 == 0
    assert main(["--config", str(config), "asterisk", "render", "--node", "ast1", "--out", str(tmp_path / "a")]) == 0
    assert "systemname = ast1" in (tmp_path / "a" / "asterisk.conf").read_text()
    assert main(["--config", str(config), "asterisk", "render", "--node", "nope", "--out", str(tmp_path / "b")]) == 2
    assert "no Asterisk node 'nope'" in capsys.readouterr().err


def test_a_node_with_its_own_rtp_ports(settings: Settings) -> None:
    """Nodes sharing a machine get their own RTP ranges (render --node, and so apply)."""
    two_nodes(settings)
    settings.cluster.asterisk_nodes[1].rtp_start, settings.cluster.asterisk_nodes[1].rtp_end = 30000, 30998
    one, two = render_asterisk(settings, node="ast1")["rtp.conf"], render_asterisk(settings, node="ast2")["rtp.conf"]
    a = settings.asterisk
    assert f"rtpstart = {a.rtp_start}" in one and f"rtpend = {a.rtp_end}" in one
    assert "rtpstart = 30000" in two and "rtpend = 30998" in two
    for bad, why in (({"rtp_start": 30000}, "both rtp_start and rtp_end"),
                     ({"rtp_start": 31000, "rtp_end": 30000}, "rtp_start must be below rtp_end")):
        with pytest.raises(ValueError, match=why):
            AsteriskNode(name="ast3", sip_host="10.0.0.13", **bad)  # type: ignore[arg-type]
