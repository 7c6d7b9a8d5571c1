"""``dasan up`` as a user starts it, in a child process: a temporary data folder, ports the OS
chooses, no AMI bridge. Used by tests/test_up.py and tests/test_site_secrets.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def start_up(tmp_path: Path, *args: str, **extra_env: str) -> tuple[subprocess.Popen[str], str]:
    """``dasan up <args>`` run in ``tmp_path``; the process and what it printed up to its "ready"
    line (or its end, or 60 s). ``extra_env`` adds or overrides DASAN__* settings."""
    env = dict(os.environ)
    env.update({"DASAN__DATA_DIR": str(tmp_path / "var"), "DASAN__WEB__PORT": "0", "DASAN__AGI__PORT": "0",
                "DASAN__AMI__ENABLED": "false", "DASAN__RECORDINGS__DIR": str(tmp_path / "rec"), **extra_env})
    proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "up", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "ready" in line:
            break
    return proc, "".join(lines)
