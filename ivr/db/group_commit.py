"""Group commit: many concurrent writers, one durable transaction at a time.

On SQLite with ``synchronous=FULL`` (and on PostgreSQL with ``synchronous_commit=on``) the
fixed cost of a commit, the fsync, dwarfs the statements: hundreds of calls or webhooks that
write at the same moment should share one. ``GroupCommit`` queues work items; while one
transaction commits the next batch gathers, and the writer's ``run`` turns a batch into a few
set-based statements. Every item's future resolves only once the transaction that holds it has
committed, so nothing is acknowledged early.

The transactions run on the database's writer thread (``ivr.db.writer_thread``), so their
round trips do not queue behind the requests the server's loop is handling.

If a shared transaction fails on a bad row (an integrity or data error), the batch is retried
by halves so one bad item cannot fail the others (items must be re-runnable); if the database
itself is away, every item of the batch fails at once instead of being retried one by one.
A transaction that lost a race with another writer (a deadlock, a serialization failure:
``ivr.db.conflicts``) is run again whole after a short random pause, a bounded number of times,
and its items' futures are settled only after that; ``conflicts`` counts what happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.db import conflicts
from ivr.db.conflicts import ConflictCounters
from ivr.db.database import Database
from ivr.observe import GROUP_COMMIT_BATCH

log = logging.getLogger("dasan.db.group_commit")

W = TypeVar("W")
Run = Callable[[AsyncSession, list[W]], Awaitable[Sequence[Any]]]


def _settle(future: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():  # the waiter was cancelled: the write stands, nobody waits
        return
    if exc is not None:
        future.set_exception(exc)
        future.exception()  # reaches whoever awaits it; one nobody awaits must not warn at exit
    else:
        future.set_result(result)


class GroupCommit(Generic[W]):
    """``submit(item)`` -> future of ``run``'s result for that item, once committed.

    ``interval``: under load, commits start at most this far apart, so the writes of that
    moment share one (an idle writer commits the first write at once). ``skip(item)`` may fail
    an item before its batch runs (say, a write for a row whose creation failed);
    ``rolled_back(batch)`` hears of a failed transaction (to forget ids handed out in it).
    ``post(item)`` queues an item nobody waits for; ``post_failed(item, exc)`` hears if it fails.
    ``threaded``: run the transactions on the database's writer thread (``ivr.db.writer_thread``;
    ``run`` then executes on that thread's loop and must touch only its items and the session).
    """

    def __init__(self, db: Database, run: Run[W], *, interval: float = 0.01, max_batch: int = 512,
                 skip: Callable[[W], BaseException | None] | None = None,
                 rolled_back: Callable[[list[W]], None] | None = None,
                 post_failed: Callable[[W, BaseException], None] | None = None, threaded: bool = True,
                 name: str = "db") -> None:
        self.db = db
        self.batch_sizes = GROUP_COMMIT_BATCH.labels(name)  # /metrics: writes per commit, by writer
        self.threaded = threaded
        self.run = run
        self.interval = interval
        self.max_batch = max_batch
        self.skip = skip
        self.rolled_back = rolled_back
        self.post_failed = post_failed
        self.commits = 0
        self.conflict_retries = conflicts.RETRIES
        self.conflicts = ConflictCounters()
        self._pending: list[tuple[W, asyncio.Future[Any] | None]] = []
        self._loop: asyncio.Task[None] | None = None
        self._last_start = 0.0

    def submit(self, item: W) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._queue(item, future)
        return future

    def post(self, item: W) -> None:
        """Queue ``item`` without a future: it commits in order with the others."""
        self._queue(item, None)

    def _queue(self, item: W, future: asyncio.Future[Any] | None) -> None:
        self._pending.append((item, future))
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._commit_loop())

    def _fail(self, item: W, future: asyncio.Future[Any] | None, exc: BaseException) -> None:
        if future is not None:
            _settle(future, exc=exc)
        elif self.post_failed is not None:
            self.post_failed(item, exc)

    async def flush(self) -> None:
        """Wait until every submitted item is committed (shutdown)."""
        while self._loop is not None and not self._loop.done():
            await asyncio.shield(self._loop)

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_start + self.interval - loop.time()
            if wait > 0 and len(self._pending) < self.max_batch:
                await asyncio.sleep(wait)
            self._last_start = loop.time()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self.batch_sizes.observe(len(batch))
            await self._commit(batch)

    async def _transaction(self, items: list[W]) -> Sequence[Any]:
        """``run`` in one transaction: on the writer thread when the database has one."""
        async def transaction(db: Database) -> Sequence[Any]:
            async with db.transaction() as session:
                return await self.run(session, items)

        writer = self.db.writer if self.threaded else None
        if writer is None:
            return await transaction(self.db)
        return await writer.call(transaction)

    async def _run_again_on_conflict(self, items: list[W]) -> Sequence[Any]:
        """The batch's transaction; one ended by a deadlock or serialization failure is run
        again (its items are re-runnable) after a random pause, at most ``conflict_retries`` times."""
        attempt = 0
        while True:
            try:
                return await self._transaction(items)
            except Exception as exc:
                if self.rolled_back is not None:
                    self.rolled_back(items)
                kind = conflicts.conflict_of(exc)
                if kind is None:
                    raise
                self.conflicts.seen += 1
                if attempt >= self.conflict_retries:
                    self.conflicts.lost += len(items)
                    log.error("%s: a batch of %d write(s) failed %d times in a row; given up", kind, len(items),
                              attempt + 1)
                    raise
                attempt += 1
                self.conflicts.retried += 1
                log.warning("%s: a batch of %d write(s) rolled back; running it again (try %d of %d)", kind,
                            len(items), attempt, self.conflict_retries)
                await asyncio.sleep(conflicts.pause(attempt))

    async def _commit(self, batch: list[tuple[W, asyncio.Future[Any] | None]]) -> None:
        if self.skip is not None:
            kept = []
            for item, future in batch:
                failure = self.skip(item)
                if failure is None:
                    kept.append((item, future))
                else:
                    self._fail(item, future, failure)
            batch = kept
        if not batch:
            return
        items = [item for item, _ in batch]
        try:
            results = await self._run_again_on_conflict(items)
        except Exception as exc:
            if len(batch) == 1 or not isinstance(exc, IntegrityError | DataError):
                for item, future in batch:
                    self._fail(item, future, exc)
                return
            half = len(batch) // 2
            await self._commit(batch[:half])
            await self._commit(batch[half:])
            return
        self.commits += 1
        for (_, future), result in zip(batch, results, strict=True):
            if future is not None:
                _settle(future, result)
