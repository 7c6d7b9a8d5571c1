"""Measuring tools: percentiles, resident memory from /proc, servers in subprocesses."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def quiet_child() -> None:
    """A bench's child process (a server, or a job that prints its figures as JSON) logs
    nothing below ERROR."""
    logging.disable(logging.WARNING)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_kib(pid: int) -> int:
    """Resident set size of one process (VmRSS) in KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*") if Path(f"/proc/{p}/task").exists() else []:
            with contextlib.suppress(OSError):
                for c in (task / "children").read_text().split():
                    found.append(int(c))
                    todo.append(int(c))
    return found


def tree_rss_kib(pid: int) -> int:
    return rss_kib(pid) + sum(rss_kib(c) for c in children(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def processes_named(name: str) -> list[int]:
    """The pids of every process whose command name is ``name`` (e.g. the local PostgreSQL's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class ServerProcess:
    """A server run as ``python -m module args``; it prints a line with ``port=<n>`` when ready."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, ready: str = r"port=(\d+)",
                 timeout: float = 60, settled: str | None = None) -> None:
        self.args = [PYTHON, *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.ready = re.compile(ready)
        # A line printed once start-up is over (``dasan up``: "dasan: ready", after the first
        # admin's password hash and the heap freeze): no measuring before it.
        self.settled = re.compile(settled) if settled else None
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.output: deque[str] = deque(maxlen=200)

    def start(self) -> int:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            m = self.ready.search(line) if not self.port else None
            if m:
                self.port = int(m.group(1))
            if self.port and (self.settled is None or self.settled.search(line)):
                # Keep reading its output so a chatty server never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return self.port
        self.stop()
        raise RuntimeError(f"{' '.join(self.args)} did not start:\n{''.join(list(self.output)[-30:])}")

    def send_line(self, text: str = "") -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait_output(self, pattern: str, timeout: float) -> re.Match[str]:
        found = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                m = found.search(line)
                if m:
                    return m
            time.sleep(0.01)
        raise TimeoutError(f"no {pattern!r} from {self.args}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        return tree_rss_kib(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def load_generator_gc() -> Iterator[None]:
    """The load generator's own collector kept out of the figures: with a thousand calls in
    flight, the default thresholds pause this process every few hundred allocations, and a
    pause here reads as the server's latency. (The project's server tunes its own the same
    way, ``ivr.up.GC_THRESHOLDS``; the peers keep Python's defaults.)"""
    import gc

    from ivr.up import GC_THRESHOLDS

    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()

