"""The live-partials fork in the rendered dialplan (speech.live_listen; issue #19)."""

from __future__ import annotations

from ivr.asterisk.render import render
from ivr.config import Settings


def test_no_fork_without_live_listen() -> None:
    dialplan = render(Settings())["extensions.conf"]
    assert "dasan-live" not in dialplan and "AudioSocket(" not in dialplan and "SPYGROUP" not in dialplan


def test_fork_rendered_with_live_listen() -> None:
    # asterisklint (test_asterisk_render.py) predates SHA1(), Originate's options and AudioSocket;
    # this dialplan is checked by the real Asterisk 22 instead (tests/test_live_listen_asterisk.py).
    settings = Settings()
    settings.speech.live_listen = "0.0.0.0:9092"  # the server's bind address; Asterisk dials loopback
    files = render(settings)
    dialplan = files["extensions.conf"]
    assert "Queue(${QUEUE},c,,,${Q_TIMEOUT},,dasan-live-fork)" in dialplan
    assert "Originate(Local/${LIVE_STREAM}@dasan-live-spy,exten,dasan-live-socket,${LIVE_STREAM},1,10,a)" in dialplan
    assert "ChanSpy(,qESg(${FILTER(0-9a-f,${EXTEN})}))" in dialplan
    assert "AudioSocket(${EXTEN},127.0.0.1:9092)" in dialplan
    for module in ("app_originate.so", "func_sha1.so", "app_chanspy.so", "app_audiosocket.so"):
        assert f"load = {module}" in files["modules.conf"], module
