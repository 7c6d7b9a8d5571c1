"""The AMI event handlers (ivr.ami.handlers) against event dicts: no socket, no database.

The events are the recorded Asterisk 22 ones (tests/data/asterisk-captures), or those with
one field changed; a fake owner stands in for the ingester's agent cache. What the handlers
fold (contact columns, live-call plan, bus messages) is checked before any SQL runs; the
integration tests (test_ami_replay.py, test_ami_gap.py, ...) check the same through the bridge.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.ami.handlers import HANDLERS, Batch, Effects, Fact, handler_for, on, registered_events
from ivr.ami.ingest import MEMBER_EVENTS, wanted_event
from ivr.ami.protocol import event_messages
from tests.support.ami_harness import capture_chunks

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
CALL = "1795593159.8"  # the caller's channel (= Linkedid) in the "answered" capture
AGENT_LEG = "1795593165.9"


class FakeOwner:
    def __init__(self) -> None:
        self.recording_paths: dict[str, str] = {}
        self.recorded: set[str] = set()
        self.agents = {"agent1001": 7}

    async def agent_id(self, session: AsyncSession, interface: str | None) -> int | None:
        return self.agents.get((interface or "").split("/", 1)[-1])

    def screenpop(self, f: Fact, contact_id: int, citizen_id: int | None, kind: str) -> dict[str, Any]:
        return {"contact_id": contact_id, "event": kind, "caller": f.event.get("CallerIDNum", "")}

    def recording_row(self, contact_id: int, path: str, now: datetime) -> dict[str, Any]:
        return {"contact_id": contact_id, "path": path}


def captured(name: str = "answered") -> list[dict[str, str]]:
    return event_messages(capture_chunks(name))


def one(events: list[dict[str, str]], name: str) -> dict[str, str]:
    return dict(next(e for e in events if e.get("Event") == name))


async def run(events: list[dict[str, str]], contact_id: int = 1) -> tuple[Batch, list[Fact]]:
    batch = Batch(cast(AsyncSession, None), NOW, Effects(), FakeOwner())
    facts = []
    for event in events:
        handler = handler_for(event)
        fact = handler.fact(event) if handler is not None else None
        if fact is not None:
            facts.append(fact)
            await handler.apply(batch, fact, contact_id, None)  # type: ignore[union-attr]
    return batch, facts


def columns(batch: Batch, contact_id: int = 1) -> dict[str, tuple[str, Any]]:
    return batch.updates.ops.get(contact_id, {})


def test_every_event_read_has_one_handler_and_a_second_is_refused() -> None:
    assert registered_events() >= {"QueueCallerJoin", "AgentConnect", "AgentComplete", "Hangup", "Cdr",
                                   "VarSet", "UserEvent"}
    for name in registered_events() - {"VarSet", "UserEvent"}:
        assert wanted_event(name, f"Event: {name}\r\n")
    assert not MEMBER_EVENTS & registered_events()  # agent state has its own path
    # VarSet and UserEvent: parsed only for the names a handler reads, decided on the raw text
    varset = "Event: VarSet\r\nChannel: Local/agent1001@x;1\r\nVariable: {}\r\nValue: 42"
    assert wanted_event("VarSet", varset.format("CONTACT_ID"))
    assert wanted_event("VarSet", varset.format("MIXMONITOR_FILENAME"))
    assert not wanted_event("VarSet", varset.format("CONTACT_ID_OLD"))
    assert not wanted_event("VarSet", varset.format("BRIDGEPEER"))
    assert wanted_event("UserEvent", "Event: UserEvent\r\nChannel: x\r\nUserEvent: DasanSurvey")
    assert not wanted_event("UserEvent", "Event: UserEvent\r\nUserEvent: Other\r\nChannel: x")
    assert not wanted_event("Newexten", "Event: Newexten\r\nChannel: x")
    with pytest.raises(ValueError, match="two handlers"):
        on("Hangup", "hangup")(HANDLERS["Hangup"].apply)


async def test_an_answered_call_as_asterisk_sent_it() -> None:
    batch, facts = await run(captured("answered"))
    assert [f.kind for f in facts] == ["recording_file", "recording_started", "queue_join", "agent_offered",
                                       "queue_leave", "agent_connected", "hangup_request", "agent_complete",
                                       "hangup", "hangup", "cdr"]
    cols = columns(batch)
    assert cols["outcome"] == ("set", "answered")  # AgentComplete's 'set' beats the Hangup's 'first'
    assert cols["agent_id"] == ("set", 7) and cols["queue"] == ("set", "general-ko")
    assert cols["talk_seconds"] == ("set", 6.0)
    assert cols["answered_at"] == ("first", NOW)  # AgentConnect came first
    assert cols["hangup_side"][1] == "agent"
    assert cols["ended_at"] == ("first", NOW)
    assert batch.live.ops[CALL] == ("delete", None)
    assert [p["event"] for _, p in batch.effects.publish] == ["offered", "connected"]
    assert [f.event["Uniqueid"] for f, _ in batch.hangups] == [AGENT_LEG, CALL]
    assert batch.owner.recorded == {CALL}
    assert batch.recording_rows and batch.owner.recording_paths[CALL] == batch.recording_rows[0]["path"]


async def test_a_replayed_event_has_the_same_identity_and_a_new_position_another() -> None:
    join = one(captured("answered"), "QueueCallerJoin")
    _, first = await run([join])
    _, again = await run([dict(join)])
    _, moved = await run([{**join, "Position": "2"}])
    assert first[0].external_id == again[0].external_id != moved[0].external_id


async def test_abandon_closes_the_call_and_a_leave_after_a_join_drops_it_from_live() -> None:
    events = captured("abandoned")
    batch, _ = await run([one(events, "QueueCallerJoin"), one(events, "QueueCallerAbandon")])
    cols = columns(batch)
    assert cols["outcome"] == ("set", "abandoned") and cols["hangup_side"] == ("first", "caller")
    join = one(events, "QueueCallerJoin")
    batch, _ = await run([join, {**join, "Event": "QueueCallerLeave"}])
    assert batch.live.ops[join["Linkedid"]] == ("delete", None)


async def test_hangups_only_the_callers_channel_ends_the_call() -> None:
    hangups = [e for e in captured("answered") if e.get("Event") == "Hangup"]
    agent_leg = next(e for e in hangups if e["Uniqueid"] != e["Linkedid"])
    batch, _ = await run([agent_leg])
    assert columns(batch) == {} and len(batch.hangups) == 1
    batch, _ = await run([next(e for e in hangups if e["Uniqueid"] == e["Linkedid"])])
    assert columns(batch)["outcome"] == ("first", "unobserved")


async def test_cdr_fills_only_what_the_queue_events_did_not_say() -> None:
    cdr = one(captured("answered"), "Cdr")
    batch, facts = await run([cdr])
    assert facts[0].linkedid == cdr["UniqueID"]  # a Cdr has no Linkedid: its UniqueID is the call's
    cols = columns(batch)
    assert cols["outcome"] == ("over", "answered") and cols["agent_id"] == ("first", 7)
    assert cols["talk_seconds"] == ("first", float(cdr["BillableSeconds"]))
    unanswered = {**cdr, "DestinationChannel": "", "Disposition": "NO ANSWER", "LastApplication": "Queue",
                  "UserField": "fallback"}
    batch, _ = await run([unanswered])
    assert columns(batch) == {"ivr_fallback": ("set", True), "outcome": ("over", "abandoned"),
                              "hangup_side": ("first", "caller")}


async def test_varset_and_userevent_are_told_apart_by_name() -> None:
    base = {"Event": "VarSet", "Channel": "Local/agent1001@dasan-callback-00000001;1", "Uniqueid": "9.1",
            "Linkedid": "9.1"}
    _, facts = await run([{**base, "Variable": "CONTACT_ID", "Value": "42"},
                          {**base, "Uniqueid": "9.2", "Variable": "CONTACT_ID", "Value": "42"},  # not the first channel
                          {**base, "Variable": "MIXMONITOR_FILENAME", "Value": ""},
                          {**base, "Variable": "OTHER", "Value": "x"}])
    assert [(f.kind, f.data.get("contact_id")) for f in facts] == [("callback_leg", 42)]
    user = {"Event": "UserEvent", "Channel": "PJSIP/trunk-00000001", "Uniqueid": "9.1", "Linkedid": "9.1"}
    batch, facts = await run([{**user, "UserEvent": "DasanSurvey", "Score": "9"},
                              {**user, "UserEvent": "DasanFallback", "AgiStatus": "FAILURE"},
                              {**user, "UserEvent": "SomethingElse"}])
    assert [f.kind for f in facts] == ["survey_dialplan", "ivr_fallback"]
    assert facts[0].data["score"] is None  # a digit outside 1..5 is no score
    assert columns(batch) == {"outcome": ("over", "answered"), "ivr_fallback": ("set", True)}


async def test_agent_complete_reason_decides_who_hung_up_and_the_answer_time() -> None:
    complete = one(captured("answered"), "AgentComplete")
    for reason, side in (("caller", "caller"), ("agent", "agent"), ("transfer", "agent")):
        batch, _ = await run([{**complete, "Reason": reason, "TalkTime": "30"}])
        cols = columns(batch)
        assert cols["hangup_side"] == ("set", side)
        assert cols["answered_at"] == ("first", NOW - timedelta(seconds=30))
