"""What the fault tests share: private Redis and PostgreSQL servers that can be stopped and
restarted without touching the shared ones, and ``dasan`` services in subprocesses that can be
killed with SIGKILL. (Its own tests check that the kit itself restarts servers faithfully.)

Every server listens on 127.0.0.1 on a free port, lives in a temporary folder and is stopped
at the end. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent


def _postgres_bin() -> Path | None:
    """The server binaries (initdb, pg_ctl) of the newest installed PostgreSQL release: Debian
    keeps each release in /usr/lib/postgresql/<major>/bin, off PATH; elsewhere they are on PATH."""
    releases = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if releases:
        return max(releases, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


PG_BIN = _postgres_bin()


def _pg_tool(name: str) -> str:
    assert PG_BIN is not None, "own_postgres() checks for the binaries first"
    return str(PG_BIN / name)
REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class OwnRedis:
    """A redis-server with append-only persistence (fsync on every write), restartable in place."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        client = redis.Redis(port=self.port, socket_timeout=1)
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.proc = None


class OwnPostgres:
    """A PostgreSQL cluster (the newest installed release) in a temporary folder (``fsync`` on, as in production)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.data = folder / "pgdata"
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            # The temporary folder's parents must be traversable by postgres.
            for parent in self.folder.parents:
                if str(parent).startswith(tempfile.gettempdir()) and parent != Path(tempfile.gettempdir()):
                    os.chmod(parent, 0o755)
        self._run(_pg_tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")

    def start(self) -> None:
        self._run(_pg_tool("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "30",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str = "dasan") -> str:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def _tmp_folder(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    if not REDIS_SERVER:
        pytest.fail("redis-server is not installed (make services installs it)")
    folder = _tmp_folder("dasan-redis-")
    server = OwnRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    if PG_BIN is None:
        pytest.fail("PostgreSQL's initdb was found neither in /usr/lib/postgresql/*/bin nor on PATH "
                    "(make services installs postgresql)")
    folder = _tmp_folder("dasan-pg-")
    server = OwnPostgres(folder / "cluster")
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


class Dasan:
    """``dasan up --only <service>...`` in its own process group; ``kill9`` is a real SIGKILL."""

    def __init__(self, services: list[str], env: dict[str, str], cwd: Path) -> None:
        self.services, self.env, self.cwd = services, env, cwd
        self.proc: subprocess.Popen[str] | None = None
        self.lines: deque[str] = deque(maxlen=500)

    def start(self, ready: str = "dasan: ready", timeout: float = 40) -> None:
        args = [sys.executable, "-m", "ivr.cli", "up"]
        for name in self.services:
            args += ["--only", name]
        self.lines.clear()
        self.proc = subprocess.Popen(args, cwd=self.cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(ready in line for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        out = "".join(self.lines)
        self.stop()
        raise RuntimeError(f"dasan up {self.services} did not get ready:\n{out[-3000:]}")

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def address(self, service: str) -> str:
        """The first address the start-up log prints for ``service``."""
        for line in list(self.lines):
            m = re.match(rf"dasan: {re.escape(service)}\s+(\S+)", line)
            if m:
                return m.group(1)
        raise LookupError(f"no address for {service} in {''.join(self.lines)[-2000:]}")

    def port(self, service: str) -> int:
        return int(self.address(service).rstrip("/").rsplit(":", 1)[1].split("/")[0])

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()


# -- the kit's own checks --

def test_own_redis_keeps_acknowledged_writes_across_a_restart() -> None:
    with own_redis() as server:
        client = redis.Redis(port=server.port)
        client.xadd("jobs", {"n": "1"})
        server.stop()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert client.xlen("jobs") == 1
        client.close()


def test_own_postgres_restarts_with_its_data() -> None:
    with own_postgres() as server:
        with psycopg.connect(server.admin_url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t VALUES (1)")
        server.stop("immediate")  # a crash: recovery from the WAL
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.admin_url(), connect_timeout=2)
        server.start()
        with psycopg.connect(server.admin_url()) as conn:
            assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
