"""A throw-away Asterisk with only the modules a test names, for tests/test_agi_asterisk.py and
tests/test_ami_asterisk.py: its own asterisk.conf in a temporary folder (every directory under
it, the stock data dir), run in the foreground and stopped afterwards. The full rendered
configuration on a real Asterisk is tests/test_asterisk_real.py's own rig."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ASTERISK = shutil.which("asterisk") or ("/usr/sbin/asterisk" if Path("/usr/sbin/asterisk").exists() else None)
MODULE_DIRS = ["/usr/lib/asterisk/modules", "/usr/lib64/asterisk/modules", "/usr/local/lib/asterisk/modules"]


def write_config(root: Path, modules: Sequence[str], files: Mapping[str, str]) -> Path:
    """``root``/etc/asterisk.conf (every directory under ``root``), a modules.conf that loads only
    ``modules``, and ``files`` (name -> text) beside them; the path of asterisk.conf. Skips the
    test when Asterisk's modules are not installed."""
    moddir = next((d for d in MODULE_DIRS if Path(d).is_dir()), None)
    if moddir is None:
        pytest.skip(f"asterisk modules not found in {MODULE_DIRS}")
    etc = root / "etc"
    etc.mkdir()
    dirs = {d: root / d for d in ("lib", "spool", "run", "log", "db", "keys")}
    for d in dirs.values():
        d.mkdir()
    conf = etc / "asterisk.conf"
    conf.write_text(
        "[directories]\n"
        f"astetcdir => {etc}\nastmoddir => {moddir}\nastvarlibdir => {dirs['lib']}\n"
        f"astdbdir => {dirs['db']}\nastkeydir => {dirs['keys']}\nastdatadir => /var/lib/asterisk\n"
        f"astagidir => {dirs['lib']}\nastspooldir => {dirs['spool']}\nastrundir => {dirs['run']}\n"
        f"astlogdir => {dirs['log']}\n[options]\nverbose = 0\n")
    (etc / "modules.conf").write_text("[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in modules))
    for name, text in files.items():
        (etc / name).write_text(text)
    return conf


@contextmanager
def running(conf: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """Asterisk on ``conf`` in the foreground until ``ready()`` (asked every 0.1 s, 300 times at
    most; the test fails if Asterisk exits first); terminated (killed after 10 s) afterwards."""
    proc = subprocess.Popen([str(ASTERISK), "-f", "-n", "-C", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"asterisk exited with {proc.returncode}")
            if ready():
                break
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
