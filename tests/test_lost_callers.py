"""Callers lost between the IVR's choice of queue and the queue (issue #15 defect 8): during the
transfer prompt (the IVR knows, over FastAGI) or the dialplan's recording consent notice (the AMI
bridge knows, from the caller's Hangup in ``dasan-queue``). They had a queue and no outcome, so
the abandonment figures missed them; now they are abandoned calls of that queue and the
timeline says where they were lost. Callers who reached a person, or asked to be called back,
are not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ivr.ami.metrics import current_metrics
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Contact, ContactEvent
from tests.support.ami_harness import Rig, rig
from tests.support.ivr_harness import IvrHarness

DAY = datetime(2026, 11, 25, 10, tzinfo=ZoneInfo("Asia/Seoul"))  # the queues are open


@pytest.fixture
async def stack(settings: Settings, db_url: str) -> AsyncIterator[tuple[IvrHarness, Rig]]:
    """The IVR on a FastAGI socket and the AMI bridge on an AmiPeer, one database."""
    bus = MemoryBus()
    harness = await IvrHarness(Database(db_url), bus, now=DAY).start()
    try:
        async with rig(settings, db_url, bus) as r:
            yield harness, r
    finally:
        await harness.stop()
        await harness.db.dispose()


def _channel(linkedid: str, context: str, priority: str, connected: str = "<unknown>") -> dict[str, str]:
    """The caller's channel as Asterisk 22's channel events describe it (answered capture: once
    bridged to a counsellor, the connected line is theirs)."""
    return {"Channel": f"PJSIP/caller-{linkedid.replace('.', '')[-8:]}", "ChannelState": "6",
            "ChannelStateDesc": "Up", "CallerIDNum": "01012345678", "CallerIDName": "01012345678",
            "ConnectedLineNum": connected, "ConnectedLineName": "<unknown>", "Language": "ko",
            "AccountCode": "", "Context": context, "Exten": "s", "Priority": priority,
            "Uniqueid": linkedid, "Linkedid": linkedid}


async def _hang_up(r: Rig, linkedid: str, context: str, priority: str, connected: str = "<unknown>") -> None:
    chan = _channel(linkedid, context, priority, connected)
    await r.peer.emit({"Event": "HangupRequest", "Privilege": "call,all", **chan, "Cause": "16"})
    await r.peer.emit({"Event": "Hangup", "Privilege": "call,all", **chan, "Cause": "16",
                       "Cause-txt": "Normal Clearing"})
    await r.settle()


async def _record(db: Database, linkedid: str) -> tuple[Contact, list[tuple[str, str, dict[str, Any]]]]:
    async with db.session() as session:
        row = (await session.execute(select(Contact).where(Contact.call_id == linkedid))).scalar_one()
        events = [(e.kind, e.source, e.data) for e in (await session.scalars(
            select(ContactEvent).where(ContactEvent.contact_id == row.id).order_by(ContactEvent.id))).all()]
    return row, events


async def _abandoned_today(r: Rig, queue: str) -> int:
    return int((await current_metrics(r.ctx, DAY))["queues"].get(queue, {}).get("abandoned", 0))


async def test_a_caller_lost_in_the_transfer_prompt_is_abandoned_there(stack: tuple[IvrHarness, Rig]) -> None:
    ivr, r = stack
    log = await ivr.dial("3 H", linkedid="1796300000.1")  # key 3, then hangs up in the transfer prompt
    assert log.hung_up and "QUEUE" not in log.variables
    queue = ivr.call_for(log).queue
    assert queue
    row, events = await _record(ivr.db, "1796300000.1")
    assert (row.outcome, row.hangup_side, row.queue) == ("abandoned", "caller", queue)
    assert row.ivr_path == f"main:3 > queue:{queue} > hangup"
    assert ("abandoned", "ivr", {"where": "transfer_prompt", "queue": queue}) in events
    # The bridge then hears the channel hang up in the IVR's context: the IVR's word stands.
    await _hang_up(r, "1796300000.1", "dasan-ivr", "7")
    row, events = await _record(ivr.db, "1796300000.1")
    assert row.outcome == "abandoned" and [e for e in events if e[0] == "abandoned"] == [
        ("abandoned", "ivr", {"where": "transfer_prompt", "queue": queue})]
    assert await _abandoned_today(r, queue) == 1


async def test_a_caller_lost_in_the_consent_notice_is_abandoned_there(stack: tuple[IvrHarness, Rig]) -> None:
    ivr, r = stack
    log = await ivr.dial("3", linkedid="1796300000.2")
    queue = log.variables["QUEUE"]
    row, _ = await _record(ivr.db, "1796300000.2")
    assert row.queue == queue and row.outcome is None  # handed to the dialplan: the consent notice plays
    await _hang_up(r, "1796300000.2", "dasan-queue", "8")  # Read(RECORD_OPTOUT,dasan/recording-consent,...)
    row, events = await _record(ivr.db, "1796300000.2")
    assert (row.outcome, row.hangup_side, row.queue) == ("abandoned", "caller", queue)
    assert row.ended_at is not None
    assert ("abandoned", "ami", {"where": "consent_notice", "queue": queue, "context": "dasan-queue",
                                 "exten": "s", "priority": "8"}) in events
    assert await _abandoned_today(r, queue) == 1
    await _hang_up(r, "1796300000.2", "dasan-queue", "8")  # a replay changes nothing
    assert [e for e in (await _record(ivr.db, "1796300000.2"))[1] if e[0] == "abandoned"] == [
        ("abandoned", "ami", {"where": "consent_notice", "queue": queue, "context": "dasan-queue",
                              "exten": "s", "priority": "8"})]


async def test_a_caller_answered_or_called_back_is_not_abandoned(stack: tuple[IvrHarness, Rig]) -> None:
    ivr, r = stack
    # Reached a counsellor (the queue's events), then hung up in the survey, in dasan-queue too.
    log = await ivr.dial("3", linkedid="1796300000.3")
    queue = log.variables["QUEUE"]
    chan = _channel("1796300000.3", "dasan-queue", "9")
    agent = {"DestChannel": "PJSIP/agent1001-00000001", "DestUniqueid": "1796300000.4", "Queue": queue,
             "Interface": "PJSIP/agent1001", "MemberName": "agent1001"}
    await r.peer.emit({"Event": "QueueCallerJoin", **chan, "Queue": queue, "Position": "1", "Count": "1"})
    await r.peer.emit({"Event": "AgentConnect", **chan, **agent, "HoldTime": "3", "RingTime": "2"})
    await r.peer.emit({"Event": "AgentComplete", **chan, **agent, "HoldTime": "3", "TalkTime": "40",
                       "Reason": "agent"})
    await _hang_up(r, "1796300000.3", "dasan-queue", "17")
    row, events = await _record(ivr.db, "1796300000.3")
    assert row.outcome == "answered" and not [e for e in events if e[0] == "abandoned"]
    # The same, with the bridge away during the queue: only the hang-up in the survey is heard,
    # the counsellor as the channel's connected line.
    await ivr.dial("3", linkedid="1796300000.6")
    await _hang_up(r, "1796300000.6", "dasan-queue", "17", connected="120")
    row, events = await _record(ivr.db, "1796300000.6")
    assert row.outcome != "abandoned" and not [e for e in events if e[0] == "abandoned"]
    # Left the queue to be called back (the callback route), then hung up in the callback offer.
    log = await ivr.dial("3", linkedid="1796300000.5", callerid="01055556666")
    log = await ivr.dial("", route="callback", linkedid="1796300000.5", callerid="01055556666",
                         variables={"CALLBACK_QUEUE": queue})  # no CONTACT_ID: found by the Linkedid
    assert log.variables["IVR_RESULT"] == "hangup"
    await _hang_up(r, "1796300000.5", "dasan-callback-request", "3")
    row, events = await _record(ivr.db, "1796300000.5")
    assert row.outcome == "callback" and not [e for e in events if e[0] == "abandoned"]
    assert await _abandoned_today(r, queue) == 0
