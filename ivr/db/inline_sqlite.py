"""SQLite for the database writer thread (``ivr.db.writer_thread``): a connection that makes
its sqlite3 calls on the writer's own thread, and transactions that take the write lock when
they begin.

The writer's loop has nothing else to do while a statement runs, and sqlite3 lets go of the
GIL meanwhile, so aiosqlite's worker thread would only add two thread hand-offs per statement.
``BEGIN IMMEDIATE`` makes a writer that finds another connection writing wait for it
(``busy_timeout``) instead of failing when it tries to write after reading.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, its sqlite3 calls made on the calling thread (the writer's)."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> _InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, _InlineConnection]:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


async def inline_sqlite(path: str) -> _InlineConnection:
    # No driver-issued BEGIN (isolation_level=None): ``begin_immediate`` begins instead.
    return await _InlineConnection(
        lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False), 64)


def begin_immediate(engine: AsyncEngine) -> None:
    """SQLite transactions of this engine take the write lock when they begin (SQLAlchemy's
    recipe for pysqlite/aiosqlite, with the driver's own BEGIN handling turned off)."""

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
