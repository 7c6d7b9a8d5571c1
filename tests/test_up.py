"""`dasan up` as a user runs it: starts, prints where it listens, answers, stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.up import start_up


def test_up_prints_addresses_serves_and_stops_cleanly(tmp_path: Path) -> None:
    proc, output = start_up(tmp_path)
    try:
        match = re.search(r"dasan: web\s+(http://\S+)", output)
        assert match, output
        with urllib.request.urlopen(match.group(1) + "healthz", timeout=10) as resp:
            assert json.load(resp)["status"] == "ok"
        assert (tmp_path / "var" / "dasan.db").exists()
        # The first run prints an admin account that really signs in to the console.
        first = re.search(r"console user 'admin', password '([^']+)'", output)
        assert first, output
        login = urllib.request.Request(
            match.group(1) + "api/login", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"username": "admin", "password": first.group(1)}).encode())
        with urllib.request.urlopen(login, timeout=10) as resp:
            assert json.load(resp)["role"] == "admin"
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "dasan: stopped" in rest


def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for service, setting in (("web", "web.port"), ("agi", "agi.port")):
            env = dict(os.environ)
            env.update({
                "DASAN__DATA_DIR": str(tmp_path / "var"),
                "DASAN__AMI__ENABLED": "false",
                f"DASAN__{service.upper()}__HOST": "127.0.0.1",
                f"DASAN__{service.upper()}__PORT": str(port),
            })
            proc = subprocess.run([sys.executable, "-m", "ivr.cli", "up", "--only", service], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert proc.stderr.strip() == (
                f"dasan: {service} cannot listen on 127.0.0.1:{port}: the port is in use; set {setting} in the "
                f"configuration (or DASAN__{service.upper()}__PORT) to a free port"), proc.stderr
            assert "Traceback" not in proc.stdout
