"""A database writer on its own thread and event loop, for group commits under load.

A group commit is a chain of round trips (a handful of statements, then COMMIT). On the
server's loop each round trip waits its turn behind every request the loop is handling: when
a batch of 200 webhooks is answered, the next batch's first statement waits until all 200
responses are written and their next requests read, and the commit after it waits the same
way. The loop then idles while the database works, and the database idles while the loop
works. Here the transaction runs on a loop of its own, with its own engine (its own
connections), so its round trips wait only for the database; the server's loop hands a
batch over and hears back once per batch.

SQLite: the writer's connection makes its sqlite3 calls on the writer's own thread (aiosqlite's
connection without its worker thread: the loop has nothing else to do while a statement
runs, and sqlite3 lets go of the GIL meanwhile), which saves two thread hand-offs per
statement. Its transactions start with ``BEGIN IMMEDIATE``, so a writer that finds another
connection writing waits for it (``busy_timeout``) instead of failing when it tries to write
after reading.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from ivr.db.database import Database

T = TypeVar("T")


class WriterThread:
    """``await writer.call(fn)`` runs ``fn(db)`` on the writer's loop with the writer's own
    ``Database`` (same URL) and returns its result on the caller's loop."""

    def __init__(self, url: str, name: str = "dasan-db-writer") -> None:
        self.url = url
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: Database | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            ready = threading.Event()
            holder: dict[str, Any] = {}

            def main() -> None:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                holder["loop"] = loop
                ready.set()
                loop.run_forever()
                loop.close()

            self._thread = threading.Thread(target=main, name=self.name, daemon=True)
            self._thread.start()
            ready.wait()
            self._loop = holder["loop"]
            return self._loop

    def _database(self) -> Database:
        if self._db is None:  # made on the writer's loop: its connections belong to it
            from ivr.db.database import Database

            url = make_url(self.url)
            if url.drivername.startswith("sqlite"):
                self._db = Database(self.url, async_creator=functools.partial(_inline_sqlite, str(url.database)))
                _begin_immediate(self._db)
            else:
                self._db = Database(self.url)
        return self._db

    async def call(self, fn: Callable[[Database], Awaitable[T]]) -> T:
        loop = self._start()

        async def run() -> T:
            return await fn(self._database())

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(run(), loop)
        return await asyncio.wrap_future(future)

    async def stop(self) -> None:
        """Close the writer's connections and end its thread (idempotent)."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is None or thread is None:
            return
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(db.dispose(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)


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


async def _inline_sqlite(path: str) -> _InlineConnection:
    # No driver-issued BEGIN (isolation_level=None): ``_begin_immediate`` begins instead.
    return await _InlineConnection(
        lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False), 64)


def _begin_immediate(db: Database) -> None:
    """SQLite transactions of this engine take the write lock when they begin (SQLAlchemy's
    recipe for pysqlite/aiosqlite, with the driver's own BEGIN handling turned off)."""

    @event.listens_for(db.engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
