"""Engine and sessions for SQLite (default) and PostgreSQL through one code path."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam, event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ivr.db.inline_sqlite import begin_immediate, inline_sqlite
from ivr.db.migrations import upgrade
from ivr.db.urls import async_url
from ivr.db.writer_thread import WriterThread

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers work while a writer commits; synchronous=FULL makes a commit durable
    # (fsync'd) before we acknowledge anything to a caller or an SMS provider.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# What set-based writers execute on: a session, or its connection (no ORM layer per statement).
Executor = AsyncSession | AsyncConnection


def dialect_name(executor: Executor) -> str:
    """'sqlite' or 'postgresql' for a session or connection of a Database's engine."""
    if isinstance(executor, AsyncConnection):
        return str(executor.dialect.name)
    return str(executor.get_bind().dialect.name)


def among(executor: Executor, column: Any, values: list[Any]) -> ColumnElement[bool]:
    """``column IN values`` for a set-based writer's lookups. On PostgreSQL ``= ANY(array)``:
    one parameter, so the SQL text is the same whatever the number of values and psycopg
    converts and prepares it once (an expanded IN list of a few hundred values is new SQL
    each batch, and turning it into a query cost more than running it)."""
    if dialect_name(executor) == "postgresql":
        return column == any_(bindparam(f"{column.key}_set", values, type_=ARRAY(column.type), unique=True))
    return column.in_(values)  # type: ignore[no-any-return]


class Database:
    def __init__(self, url: str, echo: bool = False, **engine_options: Any) -> None:
        self.url = async_url(url)
        parsed = make_url(self.url)
        self.dialect = "sqlite" if parsed.drivername.startswith("sqlite") else "postgresql"
        kwargs: dict[str, Any] = {"echo": echo, **engine_options}
        if self.dialect == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if self.dialect == "postgresql":
            kwargs.update(pool_size=20, max_overflow=20, pool_pre_ping=True)
            # Every execution planned for its own parameters: a prepared statement's generic plan
            # guesses how many values an ``among`` array holds, and picked whole-table scans for
            # the batch lookups (3x slower webhooks). Planning costs a fraction of a millisecond.
            kwargs.setdefault("connect_args", {}).setdefault("options", "-c plan_cache_mode=force_custom_plan")
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer: WriterThread[Database] | None = None
        self._in_memory = self.dialect == "sqlite" and (
            not parsed.database or parsed.database == ":memory:" or "mode=memory" in self.url)

    @property
    def writer(self) -> WriterThread[Database] | None:
        """The writer thread group commits run their transactions on (``ivr.db.writer_thread``);
        None for an in-memory SQLite database, which another engine would not see."""
        if self._in_memory:
            return None
        if self._writer is None:
            self._writer = WriterThread(functools.partial(_writer_database, self.url), Database.dispose)
        return self._writer

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed (durably) when the block ends without error."""
        async with self.sessions() as session, session.begin():
            yield session

    def upgrade(self, revision: str = "heads") -> None:
        """Run Alembic migrations (synchronously; call before serving or via to_thread)."""
        upgrade(self.url, revision)

    async def aupgrade(self, revision: str = "heads") -> None:
        await asyncio.to_thread(self.upgrade, revision)

    async def dispose(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        await self.engine.dispose()


def _writer_database(url: str) -> Database:
    """The writer thread's own Database (same URL), made on its loop; on SQLite its connection
    works on that thread and its transactions begin IMMEDIATE (``ivr.db.inline_sqlite``)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return Database(url)
    db = Database(url, async_creator=functools.partial(inline_sqlite, str(parsed.database)))
    begin_immediate(db.engine)
    return db
