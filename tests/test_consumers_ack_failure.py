"""A bus error while a consumer acknowledges a job does not stop the consumer.

The ``open311`` and ``messaging`` consumers ack each job after its effect is committed. If
the ack itself fails (Redis away for a moment), the job stays pending: the consumer must go
on with the next jobs, and the unacked one is claimed again and handled once (its effect is
idempotent). Real database and bus (in-process); the ack is made to fail once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import test_open311_inbound as open311_tests
from sqlalchemy import func, select

from ivr.bus import Bus, Job
from ivr.context import AppContext
from ivr.db.models import Message
from ivr.messaging import outbound
from ivr.messaging.outbound import MessagingService
from ivr.open311 import inbound
from ivr.open311.inbound import InboundConsumer
from ivr.open311.models import ServiceRequest

ctx = open311_tests.ctx  # the same fixture: a migrated SQLite database, the bus under test
store_message = open311_tests.store_message


def fail_first_ack(bus: Bus) -> list[str]:
    """Make the bus's next ack raise as Redis would when it goes away; returns the failed ids."""
    failed: list[str] = []
    real_ack = bus.ack

    async def ack(job: Job, group: str) -> None:
        if not failed:
            failed.append(job.id)
            raise ConnectionError("Redis went away")
        await real_ack(job, group)

    bus.ack = ack  # type: ignore[method-assign]
    return failed


async def _until(check: Any, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110  (polling the database and the bus)
            await asyncio.sleep(0.05)


async def _settled(ctx: AppContext, stream: str, group: str, count: Any) -> bool:
    """All three jobs had their effect and none is left unacknowledged."""
    async with ctx.db.session() as session:
        done = await session.scalar(count)
    return done == 3 and await ctx.bus.pending(stream, group) == 0


async def test_open311_consumer_survives_a_failed_ack(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbound, "STALE_SECONDS", 0.3)  # claim the unacked job again soon
    reports = [await store_message(ctx, f"010-4444-{n:04d}", f"light 가로등이 꺼졌어요 {n}") for n in range(3)]
    await open311_tests.run_jobs(ctx, reports)  # each citizen is asked to confirm; the yes files it
    jobs = [await store_message(ctx, f"010-4444-{n:04d}", "예") for n in range(3)]
    failed = fail_first_ack(ctx.bus)
    consumer = InboundConsumer(ctx)
    await consumer.start()
    try:
        for job in jobs:
            await ctx.bus.enqueue("messages.inbound", job)
        await _until(lambda: _settled(ctx, "messages.inbound", inbound.GROUP, select(func.count(ServiceRequest.id))))
    finally:
        await consumer.stop()
    assert failed, "the ack never failed: the test did not test anything"
    async with ctx.db.session() as session:
        refs = list(await session.scalars(select(ServiceRequest.source_ref)))
    assert len(refs) == 3 and len(set(refs)) == 3  # every message once, the re-claimed one too


async def test_messaging_consumer_survives_a_failed_ack(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "STALE_SECONDS", 0.3)
    contact_ids = [(await store_message(ctx, f"010-5555-{n:04d}", "문의"))["contact_id"] for n in range(3)]
    failed = fail_first_ack(ctx.bus)
    service = MessagingService(ctx)
    await service.start()
    try:
        for n, contact_id in enumerate(contact_ids):
            await ctx.bus.enqueue("sms.outbound", {"to": f"+8210555{n:05d}", "contact_id": contact_id,
                                                   "kind": "ack", "body": f"접수되었습니다 {n}"})
        await _until(lambda: _settled(ctx, "sms.outbound", outbound.GROUP,
                                      select(func.count(Message.id)).where(Message.direction == "out")))
    finally:
        await service.stop()
    assert failed, "the ack never failed: the test did not test anything"
    async with ctx.db.session() as session:
        sent = (await session.execute(select(Message.body, func.count()).where(Message.direction == "out")
                                      .group_by(Message.body))).all()
    assert sorted(body for body, _ in sent) == [f"접수되었습니다 {n}" for n in range(3)]
    assert all(count == 1 for _, count in sent)  # the re-claimed job was not sent twice
