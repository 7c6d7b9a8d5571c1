"""A database writer on its own thread and event loop, for group commits under load.

A group commit is a chain of round trips (a handful of statements, then COMMIT). On the
server's loop each round trip waits its turn behind every request the loop is handling: when
a batch of 200 webhooks is answered, the next batch's first statement waits until all 200
responses are written and their next requests read, and the commit after it waits the same
way. The loop then idles while the database works, and the database idles while the loop
works. Here the transaction runs on a loop of its own, with its own engine (its own
connections), so its round trips wait only for the database; the server's loop hands a
batch over and hears back once per batch.

SQLite: the writer's connection makes its sqlite3 calls on the writer's own thread and begins
its transactions with ``BEGIN IMMEDIATE`` (``ivr.db.inline_sqlite``). The thread and loop here
know nothing of databases: ``Database.writer`` says what to make on the writer's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")  # what the writer's loop owns: a Database made on it (``Database.writer``)


class WriterThread(Generic[R]):
    """``await writer.call(fn)`` runs ``fn(db)`` on the writer's loop with the writer's own
    database (``make()``, called there once: its connections belong to that loop) and returns
    its result on the caller's loop; ``stop`` closes it with ``close(db)``."""

    def __init__(self, make: Callable[[], R], close: Callable[[R], Coroutine[Any, Any, None]],
                 name: str = "dasan-db-writer") -> None:
        self._make = make
        self._close = close
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: R | None = None
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

    def _database(self) -> R:
        if self._db is None:  # made on the writer's loop: its connections belong to it
            self._db = self._make()
        return self._db

    async def call(self, fn: Callable[[R], Awaitable[T]]) -> T:
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
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close(db), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
