"""GroupCommit on a real database (SQLite file and PostgreSQL): shared commits, a bad item
failing alone, items posted without a future, and no "exception never retrieved" noise."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.db import Database
from ivr.db.group_commit import GroupCommit
from ivr.db.models import Citizen


async def _insert(session: AsyncSession, items: list[str]) -> list[int]:
    rows = [Citizen(identity_kind="phone", identity=item) for item in items]
    session.add_all(rows)
    await session.flush()  # a duplicate identity raises IntegrityError here
    return [row.id for row in rows]


async def _stored(db: Database) -> list[str]:
    async with db.session() as session:
        return sorted(await session.scalars(select(Citizen.identity)))


@pytest.mark.parametrize("threaded", [False, True])
async def test_writes_of_one_moment_share_a_commit(db: Database, threaded: bool) -> None:
    group: GroupCommit[str] = GroupCommit(db, _insert, interval=0.05, threaded=threaded)
    first = await group.submit("+820000")  # an idle writer commits at once
    ids = await asyncio.gather(*(group.submit(f"+82{n:04d}") for n in range(1, 41)))
    assert first > 0 and len(set(ids)) == 40
    assert group.commits <= 3  # 41 writes, not 41 transactions
    assert len(await _stored(db)) == 41


async def test_a_bad_item_fails_alone_and_a_posted_failure_is_reported(db: Database,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    failed: list[tuple[str, BaseException]] = []
    group: GroupCommit[str] = GroupCommit(db, _insert, interval=0.02, threaded=False,
                                          post_failed=lambda item, exc: failed.append((item, exc)))
    await group.submit("+821111")
    good = [group.submit(f"+8220{n}") for n in range(6)]
    duplicate = group.submit("+821111")  # breaks the shared transaction; it is split until alone
    group.post("+821111")  # the same, with nobody waiting: post_failed hears of it
    group.post("+823333")
    unawaited = group.submit("+821111")  # fails, and nobody ever awaits it
    assert len(set(await asyncio.gather(*good))) == 6
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await duplicate
    await group.flush()
    assert [item for item, _ in failed] == ["+821111"]
    assert sorted(await _stored(db)) == sorted(["+821111", "+823333", *(f"+8220{n}" for n in range(6))])
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del unawaited
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_database_away_fails_the_whole_batch_at_once(tmp_path: Any) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/missing-schema.db")  # no tables: every write fails
    calls: list[int] = []

    async def run(session: AsyncSession, items: list[str]) -> list[int]:
        calls.append(len(items))
        await session.execute(select(func.count()).select_from(Citizen))
        return [0] * len(items)

    group: GroupCommit[str] = GroupCommit(db, run, interval=0.05, threaded=False)
    results = await asyncio.gather(*(group.submit(str(n)) for n in range(8)), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    assert sum(calls) <= 8 and len(calls) <= 2  # not retried item by item (not a data error)
    await db.dispose()
