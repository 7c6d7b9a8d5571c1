"""Shared fixtures: real SQLite and PostgreSQL databases, real in-process and Redis buses.

PostgreSQL: one migrated template database per test run, then a fresh copy per test
(CREATE DATABASE ... TEMPLATE), so every test starts from the migrated, empty schema.
Set DASAN_TEST_POSTGRES / DASAN_TEST_REDIS to point elsewhere. `make test` starts both.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from ivr import datafolder
from ivr.bus import Bus, create_bus
from ivr.bus.redis import RedisBus
from ivr.config import Settings
from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES
from ivr.db import Database
from tests.support.console import Console, SignIn, api_sign_ins, prepare_settings, serve_console

PG_ADMIN = os.environ.get("DASAN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DASAN_TEST_REDIS", "redis://127.0.0.1:6379/0")
PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def default_data_folder() -> None:
    """A bare ``Settings()`` reads menus and queues from ./var, as ``dasan`` does on a fresh
    data folder: lay it out once (a folder already there is left as it is)."""
    datafolder.seed(Settings())


def _pg_url(name: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"dasan_tmpl_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    Database(_pg_url(name)).upgrade()
    yield name
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _make_pg(template: str) -> str:
    name = f"dasan_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _drop_pg(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_database(request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """A migrated, empty database of the kind ``request.param`` names; dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / 'test.db'}"
        Database(url).upgrade()
        yield url
    else:
        name = _make_pg(request.getfixturevalue("pg_template"))
        yield _pg_url(name)
        _drop_pg(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL on each back-end in turn."""
    yield from migrated_database(request, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    Database(url).upgrade()
    return url


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = _make_pg(pg_template)
    yield _pg_url(name)
    _drop_pg(name)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Each bus back-end in turn; Redis keys live under a unique prefix, removed afterwards."""
    prefix = f"dasan-test-{uuid.uuid4().hex[:10]}"
    b = create_bus(request.param, REDIS_URL, prefix)
    await b.start()
    yield b
    if request.param == "redis":
        assert isinstance(b, RedisBus)
        await drop_keys(b)
    await b.close()


@pytest.fixture
async def redis_bus() -> AsyncIterator[RedisBus]:
    """A started Redis bus of the test's own: its keys under a unique prefix, removed afterwards."""
    bus = RedisBus(REDIS_URL, prefix=f"dasan-test-{uuid.uuid4().hex[:10]}")
    await bus.start()
    yield bus
    await drop_keys(bus)
    await bus.close()


async def drop_keys(bus: RedisBus) -> None:
    """Deletes every Redis key under ``bus``'s prefix."""
    keys = [k async for k in bus.redis.scan_iter(f"{bus.prefix}:*")]
    if keys:
        await bus.redis.delete(*keys)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    """Settings on a temporary SQLite database and data directory, in-process bus, free ports."""
    s = Settings()
    s.data_dir = tmp_path / "var"
    s.database.url = sqlite_url
    s.recordings.dir = tmp_path / "recordings"
    s.agi.port = 0
    s.web.port = 0
    s.ami.enabled = False
    # Explicit secrets, as a site sets them (none ships; ivr.site_secrets generates missing ones).
    s.web.secret_key = "test-web-" + uuid.uuid4().hex + uuid.uuid4().hex
    s.sms.webhook_secret = "test-webhook-" + uuid.uuid4().hex
    s.ami.secret = "test-ami-" + uuid.uuid4().hex
    # Admin pages and fuzzers write what they are given: give them copies, never the repo's
    # own queues/ and menus, nor a real /etc/asterisk.
    s.queues_dir = tmp_path / "settings-queues"
    shutil.copytree(DEFAULT_QUEUES, s.queues_dir)
    s.agi.menus_dir = tmp_path / "settings-menus"
    shutil.copytree(DEFAULT_MENUS, s.agi.menus_dir)
    s.asterisk.config_dir = tmp_path / "settings-asterisk-etc"
    s.asterisk.sounds_dir = tmp_path / "settings-sounds"
    return s


@pytest.fixture
async def console(settings: Settings, db_url: str, tmp_path: Path) -> AsyncIterator[Console]:
    """The whole console app, seeded, on SQLite and PostgreSQL in turn (a module may define its own)."""
    settings.database.url = db_url
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        yield c


@pytest.fixture
async def login(console: Console) -> AsyncIterator[SignIn]:
    """``await login("kim.minji")``: an ApiClient signed in as that seeded user."""
    async with api_sign_ins(console) as sign_in:
        yield sign_in
