"""The Asterisk side of browser calls, rendered from dasan.yaml's ``webrtc:`` (no Asterisk
needed): http.conf, the ws/wss transports, webrtc endpoints, sorcery.conf, rtp.conf ICE and
the browser contexts of the dialplan (checked by asterisklint)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ivr.asterisk.render import RenderError, render
from ivr.config import Settings, WebrtcSettings
from ivr.webrtc.asterisk_view import ws_url
from tests.test_asterisk_render import ASTERISKLINT, sections, values


def webrtc_settings(**overrides: object) -> Settings:
    s = Settings()
    s.webrtc.enabled = True
    s.webrtc.video_slots = 3
    s.webrtc.voice_slots = 2
    s.webrtc.softphone_agents = ["park.soyeon"]
    for key, value in overrides.items():
        setattr(s.webrtc, key, value)
    return s


def endpoint(text: str, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for section, items in sections(text):
        if section.split("(")[0] == name:
            for key, value in items:
                out.setdefault(key, []).append(value)
    return out


def test_disabled_by_default_nothing_listens_for_browsers() -> None:
    files = render(Settings())
    assert values(files["http.conf"], "general", "enabled") == ["no"]
    assert "protocol = ws" not in files["pjsip.conf"] and "webvideo-" not in files["pjsip.conf"]
    assert "dasan-web-video" not in files["extensions.conf"]
    assert values(files["sorcery.conf"], "res_pjsip", "auth") == ["config,pjsip.conf,criteria=type=auth"]


def test_http_conf_plain_ws_on_loopback_for_tests() -> None:
    files = render(webrtc_settings(http_port=18088))
    http = files["http.conf"]
    assert values(http, "general", "enabled") == ["yes"]
    assert values(http, "general", "bindaddr") == ["127.0.0.1"]
    assert values(http, "general", "bindport") == ["18088"]
    assert values(http, "general", "enablestatic") == ["no"]
    assert "tlsenable" not in http
    assert values(files["pjsip.conf"], "transport-ws", "protocol") == ["ws"]
    assert "transport-wss" not in files["pjsip.conf"]


def test_tls_needs_certificate_paths_and_adds_wss() -> None:
    with pytest.raises(RenderError, match="tls_cert_file"):
        render(webrtc_settings(tls=True))
    files = render(webrtc_settings(tls=True, tls_cert_file=Path("/etc/dasan/tls/pbx.pem"),
                                   tls_private_key=Path("/etc/dasan/tls/pbx.key")))
    http = files["http.conf"]
    assert values(http, "general", "tlsenable") == ["yes"]
    assert values(http, "general", "tlsbindaddr") == ["0.0.0.0:8089"]
    assert values(http, "general", "tlscertfile") == ["/etc/dasan/tls/pbx.pem"]
    assert values(http, "general", "tlsprivatekey") == ["/etc/dasan/tls/pbx.key"]
    assert values(files["pjsip.conf"], "transport-wss", "protocol") == ["wss"]
    # An IPv6 address (the admin console accepts one) is bracketed before its port.
    files = render(webrtc_settings(tls=True, tls_bind="::1", tls_cert_file=Path("/etc/dasan/tls/pbx.pem"),
                                   tls_private_key=Path("/etc/dasan/tls/pbx.key")))
    assert values(files["http.conf"], "general", "tlsbindaddr") == ["[::1]:8089"]
    assert ws_url(WebrtcSettings(http_bind="::1")) == "ws://[::1]:8088/ws"


def test_citizen_endpoints_are_webrtc_reach_only_their_context_and_have_no_password_in_the_file() -> None:
    pjsip = render(webrtc_settings())["pjsip.conf"]
    template = endpoint(pjsip, "web-citizen")
    assert template["webrtc"] == ["yes"] and template["allow"] == ["ulaw,alaw"]
    assert template["dtmf_mode"] == ["rfc4733"] and template["direct_media"] == ["no"]
    for n in (1, 2, 3):
        video = endpoint(pjsip, f"webvideo-00{n}")
        assert video["context"] == ["dasan-web-video"] and video["allow"] == ["vp8,h264"]
        assert video["auth"] == [f"webvideo-00{n}"] and "aors" not in video  # never registers
    voice = endpoint(pjsip, "webvoice-001")
    assert voice["context"] == ["dasan-web-voice"] and "allow" not in voice  # audio only
    assert "webvideo-004" not in pjsip and "webvoice-003" not in pjsip
    # their auth objects come from astdb only (sorcery.conf): none is written here
    assert "[webvideo-001](agent-auth)" not in pjsip and "type = auth\nusername = webvideo" not in pjsip


def test_sorcery_reads_citizen_passwords_from_astdb() -> None:
    sorcery = render(webrtc_settings())["sorcery.conf"]
    assert values(sorcery, "res_pjsip", "auth") == ["config,pjsip.conf,criteria=type=auth", "astdb,dasan-webrtc"]


def test_softphone_agents_get_a_webrtc_endpoint_with_video_others_keep_udp() -> None:
    pjsip = render(webrtc_settings())["pjsip.conf"]
    web_template = endpoint(pjsip, "agent-web-endpoint")
    assert web_template["webrtc"] == ["yes"] and "transport" not in web_template
    assert "[agent1003](agent-web-endpoint)" in pjsip
    park = endpoint(pjsip, "agent1003")
    assert "vp8,h264" in park["allow"] and park["max_video_streams"] == ["1"]
    assert "[agent1001](agent-endpoint)" in pjsip


def test_unknown_softphone_agent_or_video_queue_fails_the_render() -> None:
    with pytest.raises(RenderError, match="nobody"):
        render(webrtc_settings(softphone_agents=["nobody"]))
    with pytest.raises(RenderError, match="video_queue"):
        render(webrtc_settings(video_queue="no-such-queue"))
    with pytest.raises(RenderError, match="turn_secret"):
        render(webrtc_settings(turn_server="turn.example.org:3478"))
    with pytest.raises(RenderError, match="host:port"):
        render(webrtc_settings(stun_server="stun.example.org:notaport"))


def test_rtp_conf_ice_stun_and_turn() -> None:
    rtp = render(webrtc_settings(stun_server="stun.example.org:3478", turn_server="turn:turn.example.org:3478",
                                 turn_username="pbx", turn_password="turn-pw"))["rtp.conf"]
    assert values(rtp, "general", "icesupport") == ["yes"]
    assert values(rtp, "general", "stunaddr") == ["stun.example.org:3478"]
    assert values(rtp, "general", "turnaddr") == ["turn.example.org:3478"]
    assert values(rtp, "general", "turnpassword") == ["turn-pw"]


def test_modules_needed_for_webrtc_are_required() -> None:
    modules = render(webrtc_settings())["modules.conf"]
    for name in ("res_http_websocket.so", "res_pjsip_transport_websocket.so", "res_srtp.so"):
        assert f"require = {name}" in modules


def test_browser_contexts_admit_once_and_queue(tmp_path: Path) -> None:
    dialplan = render(webrtc_settings())["extensions.conf"]
    admit = dialplan[dialplan.index("[dasan-web-admit]"):dialplan.index("[dasan-web-video]")]
    # the credential is deleted as the call starts (single use) and its expiry checked
    assert "DB_DELETE(dasan-webrtc/auth/${WEB_SLOT})" in admit
    assert "${EPOCH} > ${WEB_EXPIRES}" in admit and "Hangup(21)" in admit
    video = dialplan[dialplan.index("[dasan-web-video]"):dialplan.index("[dasan-web-voice]")]
    assert "exten => sign-video,1,Gosub(dasan-web-admit,s,1)" in video
    assert "Queue(${QUEUE},c,,,${Q_TIMEOUT})" in video and "Hangup(34)" in video
    voice = dialplan[dialplan.index("[dasan-web-voice]"):]
    assert "exten => ivr,1,Gosub(dasan-web-admit,s,1)" in voice and "Goto(dasan-ivr,s,1)" in voice
    assert "exten => sign-video," not in voice  # a voice credential cannot reach the video queue
    # agents can blind-transfer a caller to any queue
    assert "exten => q-en,1,Set(QUEUE=en)" in dialplan
    path = tmp_path / "extensions.conf"
    path.write_text(dialplan)
    result = subprocess.run([ASTERISKLINT, "dialplan-check", str(path)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120, env={**os.environ, "ALINT_IGNORE": ""})
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr
