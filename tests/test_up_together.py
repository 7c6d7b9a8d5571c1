"""Services started together on one empty PostgreSQL database (``dasan up --only ...`` each, as a
split deployment starts them): both migrate, both start, exactly one creates the first admin."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import User
from ivr.up import _first_admin
from ivr.web.auth import verify_password
from tests.conftest import PG_ADMIN, _drop_pg, _pg_url

PASSWORD = re.compile(r"console user 'admin', password '([^']+)'")


@pytest.fixture
def empty_pg() -> Iterator[str]:
    """A PostgreSQL database with nothing in it, not even the schema."""
    name = f"dasan_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _pg_url(name)
    _drop_pg(name)


def _start(url: str, folder: Path, service: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DASAN__DATABASE__URL": url, "DASAN__DATA_DIR": str(folder / "var"),
           "DASAN__WEB__PORT": "0", "DASAN__AGI__PORT": "0", "DASAN__AMI__ENABLED": "false",
           "DASAN__RECORDINGS__DIR": str(folder / "rec")}
    folder.mkdir()
    return subprocess.Popen([sys.executable, "-m", "ivr.cli", "up", "--only", service], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _until_ready(proc: subprocess.Popen[str]) -> str:
    """Its output up to 'dasan: ready', or everything it printed before it ended."""
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if "dasan: ready" in line:
            break
    return "".join(lines)


async def _users(url: str) -> list[User]:
    db = Database(url)
    try:
        async with db.session() as session:
            return list((await session.scalars(select(User))).all())
    finally:
        await db.dispose()


async def _context(url: str) -> AppContext:
    settings = Settings()
    settings.database.url = url
    return await AppContext.create(settings, migrate=False)


def test_two_services_started_together_on_an_empty_database(empty_pg: str, tmp_path: Path) -> None:
    procs = [_start(empty_pg, tmp_path / name, name) for name in ("web", "agi")]
    try:
        outputs = [_until_ready(p) for p in procs]
        for proc, output in zip(procs, outputs, strict=True):
            assert "dasan: ready" in output, output  # neither died on the other's schema or admin
            assert proc.poll() is None, output
    finally:
        rests = []
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            rests.append(proc.communicate(timeout=60)[0])
    assert [p.returncode for p in procs] == [0, 0], rests
    passwords = [m.group(1) for m in (PASSWORD.search(o) for o in outputs) if m]
    assert len(passwords) == 1, outputs  # one process created the admin and told its password
    users = asyncio.run(_users(empty_pg))
    assert [u.username for u in users] == ["admin"]
    assert verify_password(users[0].password_hash, passwords[0])  # the printed password is the one kept


async def test_first_admin_of_concurrent_starts_is_created_once(pg_url: str) -> None:
    """The same race, forced: many processes' start-ups (a context each, its own connections)
    ask for the first admin at the same moment."""
    contexts = [await _context(pg_url) for _ in range(4)]
    try:
        passwords = await asyncio.gather(*(_first_admin(ctx) for ctx in contexts))
        again = await _first_admin(contexts[0])
    finally:
        for ctx in contexts:
            await ctx.close()
    created = [p for p in passwords if p is not None]
    assert len(created) == 1 and again is None
    users = await _users(pg_url)
    assert [u.username for u in users] == ["admin"] and users[0].role == "admin"
    assert verify_password(users[0].password_hash, created[0])
