"""Throw-away databases for benchmarks: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from ivr.db import Database

PG_ADMIN = os.environ.get("DASAN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def sqlite_db(folder: Path | None = None) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="dasan-bench-", dir=folder) as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        Database(url).upgrade()
        yield url


@contextlib.contextmanager
def postgres_db() -> Iterator[str]:
    name = f"dasan_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    try:
        Database(url).upgrade()
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available() -> str:
    """'' when the PostgreSQL server answers, else why not."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return ""
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN} not reachable ({exc})"


@contextlib.contextmanager
def each_database() -> Iterator[list[tuple[str, contextlib.AbstractContextManager[str]]]]:
    backends: list[tuple[str, contextlib.AbstractContextManager[str]]] = [("SQLite", sqlite_db())]
    if not postgres_available():
        backends.append(("PostgreSQL", postgres_db()))
    yield backends
