"""The admin console edits the browser-call settings (issue #17): a good edit is validated,
saved in the data folder (webrtc.yaml; the TURN secret in secrets.yaml, never shown back),
recorded in the change history and the audit log and rendered into Asterisk's http.conf,
pjsip.conf and rtp.conf; bad values are refused with nothing written; only administrators may."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from ivr.config import Settings
from ivr.console.models import ConfigChange
from ivr.db.models import AuditLog
from ivr.queues import load_queues
from ivr.webrtc import site_settings
from tests.support.console import Console, prepare_settings, serve_console

TURN_SECRET = "coturn-shared-" + "x7Qp2mZ9aLw4"


@pytest.fixture
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    """The console on SQLite (the edit touches files, not the database's dialect)."""
    settings.webrtc.enabled = True
    settings.webrtc.softphone_agents = ["park.soyeon"]
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        yield c


def snapshot(console: Console) -> dict[str, str]:
    """Every file an edit may write, by name."""
    s = console.ctx.settings
    folders = [s.data_dir, s.queues_dir, s.asterisk.config_dir]
    return {str(p): p.read_text() for folder in folders if folder.exists()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


async def history(console: Console) -> list[ConfigChange]:
    async with console.ctx.db.session() as session:
        return list((await session.execute(select(ConfigChange).order_by(ConfigChange.id))).scalars())


async def test_an_admin_edits_ports_certificates_stun_turn_and_video_agents(console: Console, login: Any) -> None:
    admin = await login("admin1")
    status, before = await admin.call("GET", "/api/console/admin/webrtc")
    assert status == 200 and before["edit"]["http_port"] == 8088 and before["edit"]["turn_secret_set"] is False
    assert before["edit"]["video_agents"] == ["park.soyeon"]
    edit = {"http_port": 8188, "tls": True, "tls_port": 8189, "tls_cert_file": "/etc/asterisk/keys/pbx.pem",
            "tls_private_key": "/etc/asterisk/keys/pbx.key", "stun_server": "stun.example.org:3478",
            "turn_server": "turn.example.org:3478", "turn_secret": TURN_SECRET,
            "softphone_agents": ["park.soyeon", "kim.minji"], "video_agents": ["park.soyeon", "kim.minji"],
            "comment": "wss 개통", "version": before["version"]}
    status, body = await admin.call("POST", "/api/console/admin/webrtc", json=edit)
    # Nothing answers AMI here: written and rendered, the reload is queued (as for any admin edit).
    assert status == 200 and body["status"] == "failed" and "not reachable" in body["result"], body
    assert set(body["fields"]) >= {"http_port", "tls", "tls_cert_file", "turn_secret", "video_agents"}

    s = console.ctx.settings
    saved = yaml.safe_load(site_settings.site_file(s).read_text())
    assert saved["http_port"] == 8188 and saved["tls_cert_file"] == "/etc/asterisk/keys/pbx.pem"
    assert TURN_SECRET not in site_settings.site_file(s).read_text()
    secrets_path = s.data_dir / "secrets.yaml"
    assert yaml.safe_load(secrets_path.read_text())["webrtc"]["turn_secret"] == TURN_SECRET
    assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
    agents = {a.username: a.skills for a in load_queues(s.queues_dir).agents}
    assert agents["kim.minji"]["sign-video"] == 3 and agents["park.soyeon"]["sign-video"] == 4

    # Rendered into Asterisk's folder: http.conf's ports and certificate, pjsip's wss transport,
    # the new softphone agent's WebRTC endpoint, STUN/TURN in rtp.conf.
    etc = s.asterisk.config_dir
    http = (etc / "http.conf").read_text()
    assert "bindport = 8188" in http and "tlsbindaddr = 0.0.0.0:8189" in http
    assert "tlscertfile = /etc/asterisk/keys/pbx.pem" in http and "tlsprivatekey = /etc/asterisk/keys/pbx.key" in http
    pjsip = (etc / "pjsip.conf").read_text()
    assert "[transport-wss]" in pjsip
    assert "[agent1001](agent-web-endpoint)" in pjsip  # kim.minji's phone is now the softphone
    kim = pjsip[pjsip.index("[agent1001](agent-web-endpoint)"):]
    assert "allow = vp8,h264" in kim[:kim.index("(agent-auth)")]  # and she takes video
    rtp = (etc / "rtp.conf").read_text()
    assert "stunaddr = stun.example.org:3478" in rtp
    assert "turnaddr" not in rtp and TURN_SECRET not in rtp  # a shared secret is for the browsers' relays only

    # Never shown back: the GET says a secret is set, the history says it changed.
    status, after = await admin.call("GET", "/api/console/admin/webrtc")
    assert after["edit"]["turn_secret_set"] is True and TURN_SECRET not in str(after)
    assert after["edit"]["http_port"] == 8188 and after["ws_url"] == "wss://127.0.0.1:8189/ws"
    assert after["edit"]["video_agents"] == ["kim.minji", "park.soyeon"]
    rows = await history(console)
    assert [(r.kind, r.author, r.comment) for r in rows] == [("webrtc", "admin1", "wss 개통"), ("agents", "admin1", "wss 개통")]
    assert "+http_port: 8188" in rows[0].diff and "turn_secret: changed" in rows[0].diff
    assert all(TURN_SECRET not in r.diff for r in rows)
    async with console.ctx.db.session() as session:
        audit = (await session.execute(select(AuditLog).where(AuditLog.action == "config_changed",
                                                              AuditLog.target == "webrtc"))).scalars().all()
    assert len(audit) == 1 and audit[0].actor == "admin1" and "turn_secret" in audit[0].data["fields"]
    assert audit[0].data["change_ids"] == [r.id for r in rows] and TURN_SECRET not in str(audit[0].data)
    # The /call page's ICE servers follow at once (this process's settings were updated).
    assert s.webrtc.stun_server == "stun.example.org:3478" and s.webrtc.turn_secret == TURN_SECRET

    # A second edit from the first one's version would overwrite it: refused.
    status, body = await admin.call("POST", "/api/console/admin/webrtc",
                                    json={"http_port": 8288, "version": before["version"]})
    assert status == 409


@pytest.mark.parametrize(("edit", "status", "field"), [
    ({"http_port": 70000}, 400, "http_port"),
    ({"http_bind": "0.0.0.0; evil"}, 400, "http_bind"),
    ({"tls_cert_file": "relative/cert.pem"}, 400, "tls_cert_file"),
    ({"tls_cert_file": "/etc/keys/a.pem\nenabled = yes"}, 400, "tls_cert_file"),
    ({"ws_url": "http://example.org/ws"}, 400, "ws_url"),
    ({"stun_server": "stun.example.org:99999"}, 400, "stun_server"),
    ({"turn_secret": "change-me"}, 400, "turn_secret"),
    ({"turn_secret": "short"}, 400, "turn_secret"),
    ({"softphone_agents": ["../root"]}, 400, "softphone_agents"),
    ({"nosuch": 1}, 400, "nosuch"),
    ({"tls": True}, 422, "tls_cert_file"),  # TLS without its files
    ({"tls": True, "tls_cert_file": "/k/c.pem", "tls_private_key": "/k/c.key", "tls_port": 8088}, 422, "tls_port"),
    ({"turn_server": "turn.example.org:3478"}, 422, "turn_server"),  # no credentials for it
    ({"softphone_agents": ["nobody.here"]}, 422, "nobody.here"),
    ({"video_agents": ["nobody.here"]}, 422, "nobody.here"),
])
async def test_bad_values_are_refused_and_nothing_is_written(
        console: Console, login: Any, edit: dict[str, Any], status: int, field: str) -> None:
    admin = await login("super1")
    before = snapshot(console)
    got, body = await admin.call("POST", "/api/console/admin/webrtc", json=edit)
    assert got == status, body
    if status == 400:  # the console's schema error: {"error", "details": [{"field", "problem"}]}
        assert body["error"].startswith("the request body does not match the schema")
        assert any(d["field"] == field for d in body["details"]), body
    else:
        assert body["applied"] is False and any(field in p for p in body["problems"]), body
    assert snapshot(console) == before
    assert await history(console) == []
    assert console.ctx.settings.webrtc.http_port == 8088 and not console.ctx.settings.webrtc.tls


async def test_only_administrators_edit_them(console: Console, login: Any) -> None:
    agent = await login("kim.minji")
    before = snapshot(console)
    status, _ = await agent.call("POST", "/api/console/admin/webrtc", json={"http_port": 8188})
    assert status == 403
    reviewer = await login("review1")
    status, _ = await reviewer.call("POST", "/api/console/admin/webrtc", json={"http_port": 8188})
    assert status == 403
    assert snapshot(console) == before and await history(console) == []


def test_a_process_started_later_reads_the_edit_from_the_data_folder(settings: Settings) -> None:
    """The overlay every command applies (ivr.cli) and each render applies (asterisk_view.webrtc_context)."""
    from ivr.asterisk.render import render

    settings.webrtc.enabled = True
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    site_settings.site_file(settings).write_text("http_port: 8388\nstun_server: stun.example.net:3478\n")
    fresh = settings.model_copy(deep=True)
    files = render(fresh)
    assert "bindport = 8388" in files["http.conf"] and "stunaddr = stun.example.net:3478" in files["rtp.conf"]
    site_settings.site_file(settings).write_text("http_port: 0\n")
    with pytest.raises(ValueError, match="http_port"):
        site_settings.overlay(settings.model_copy(deep=True))


def test_a_running_web_process_follows_an_edit_saved_by_another(settings: Settings,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """SiteWebrtc (each /call request): a changed webrtc.yaml is read again; one broken by hand
    is logged and the settings in use are kept (the citizens' page stays up)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    site = site_settings.SiteWebrtc(settings)
    site.refresh()
    assert settings.webrtc.stun_server == ""
    path = site_settings.site_file(settings)
    path.write_text("stun_server: stun.example.net:3478\n")
    site.refresh()
    assert settings.webrtc.stun_server == "stun.example.net:3478"
    path.write_text("stun_server: stun.example.net:3478\nhttp_port: not-a-port\n")
    site.refresh()
    assert settings.webrtc.stun_server == "stun.example.net:3478" and settings.webrtc.http_port == 8088
    assert "browser-call settings not reloaded" in caplog.text and "http_port" in caplog.text
