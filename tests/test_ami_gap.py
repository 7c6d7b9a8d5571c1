"""Calls the AMI bridge only partly saw, and what the dialplan tells it (issue #23).

The recorded Asterisk 22 traffic is replayed by AmiPeer into the bridge and a real database:
- the bridge is down between the queue and the hang-up: the contact is completed from what
  still arrives (the Cdr), and a call whose channels are gone is never left without an outcome;
- the dialplan's fallback and its own survey reading send UserEvents (and a Cdr UserField); the
  events are built from the rendered extensions.conf, in the format Asterisk 22 documents
  (channel snapshot, ``UserEvent: <name>``, then the body's ``Header: value`` lines).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ivr.ami.protocol import encode_message, parse_message, split_messages
from ivr.ami.service import AmiBridge
from ivr.asterisk.render import render
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db.models import Agent, Channel, Contact, ContactEvent
from ivr.records import open_contact
from tests.support.ami_harness import Rig, capture_chunks, index_of, rig, wait_for

ANSWERED_ID = "1795593159.8"
ABANDONED_ID = "1795593184.10"
_SNAPSHOT = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
             "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority", "Uniqueid", "Linkedid")


def _split_at_caller_hangup(chunks: list[bytes], uniqueid: str) -> list[bytes]:
    """The capture with the caller's own Hangup event starting a chunk of its own."""
    marker = b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: "
    for i, chunk in enumerate(chunks):
        at = 0
        while (at := chunk.find(marker, at)) >= 0:
            end = chunk.find(b"\r\n\r\n", at)
            if f"\r\nUniqueid: {uniqueid}\r\n".encode() in chunk[at:end + 2]:
                return [*chunks[:i], *([chunk[:at]] if at else []), chunk[at:], *chunks[i + 1:]]
            at += 1
    raise ValueError(f"no Hangup of {uniqueid}")


async def _bridge_down(r: Rig) -> None:
    await r.bridge.stop()


async def _bridge_up(r: Rig) -> None:
    logins = r.peer.logins
    r.bridge = AmiBridge(r.ctx, metrics_interval=0.05)
    await r.bridge.start()
    await r.peer.wait_login(logins + 1)
    await wait_for(lambda: r.bridge.resyncs >= 1)
    await r.settle()


async def _contact(r: Rig, call_id: str) -> tuple[Contact, list[str]]:
    async with r.ctx.db.session() as s:
        contact = (await s.execute(select(Contact).where(Contact.call_id == call_id))).scalar_one()
        kinds = list((await s.execute(select(ContactEvent.kind).where(ContactEvent.contact_id == contact.id)
                                      .order_by(ContactEvent.id))).scalars())
    return contact, kinds


async def _agent_id(r: Rig, extension: str) -> int:
    async with r.ctx.db.session() as s:
        return int((await s.execute(select(Agent.id).where(Agent.extension == extension))).scalar_one())


async def test_call_answered_while_the_bridge_was_down_is_completed_from_its_cdr(
        settings: Settings, db_url: str) -> None:
    """Queue seen; the agent answers, talks and hangs up while the bridge is away; the caller is
    still on the line (the survey) at the reconnect; then the caller's Hangup and the Cdr."""
    chunks = _split_at_caller_hangup(capture_chunks("answered"), ANSWERED_ID)
    joined = index_of(chunks, "Event: QueueCallerJoin") + 1
    caller_hangup = index_of(chunks, "Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/caller")
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[:joined])
        await r.settle()
        await _bridge_down(r)
        await r.peer.play(chunks[joined:caller_hangup])  # AgentConnect, AgentComplete: nobody listens
        await _bridge_up(r)
        contact, _ = await _contact(r, ANSWERED_ID)
        assert contact.outcome is None and contact.ended_at is None  # its channel is alive: not closed yet
        await r.peer.play(chunks[caller_hangup:])  # the caller's Hangup, then the Cdr
        await r.settle()
        contact, kinds = await _contact(r, ANSWERED_ID)
        assert kinds[-3:] == ["hangup", "cdr", "recording_finished"]
        assert (contact.outcome, contact.agent_id, contact.queue) == (
            "answered", await _agent_id(r, "agent1001"), "general-ko")
        assert contact.talk_seconds == 12.0  # the caller leg's BillableSeconds (an upper bound)
        assert contact.ended_at is not None


async def test_no_contact_stays_without_an_outcome_once_its_channels_are_gone(
        settings: Settings, db_url: str) -> None:
    """The whole end of a queued call falls into the gap (its Cdr too), and an IVR-written
    contact of a call the bridge never saw: both are closed at the resync."""
    chunks = capture_chunks("answered")
    joined = index_of(chunks, "Event: QueueCallerJoin") + 1
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[:joined])
        await r.settle()
        await _bridge_down(r)
        async with r.ctx.db.transaction() as s:  # the IVR wrote it while the bridge was away
            await open_contact(s, Channel.voice, call_id="1795593100.3", language="ko", ivr_path="main>2",
                               started_at=datetime.now(UTC) - timedelta(minutes=1))
            await open_contact(s, Channel.sms, call_id="sms-thread-1", language="ko",
                               started_at=datetime.now(UTC) - timedelta(minutes=1))
            # ended in the IVR (its outcome written), its Hangup went by while nobody listened
            await open_contact(s, Channel.voice, call_id="1795593100.4", language="ko", outcome="self_service",
                               started_at=datetime.now(UTC) - timedelta(minutes=1))
        await r.peer.play(chunks[joined:])
        await _bridge_up(r)
        queued, kinds = await _contact(r, ANSWERED_ID)
        unseen, unseen_kinds = await _contact(r, "1795593100.3")
        sms, _ = await _contact(r, "sms-thread-1")
        self_service, _ = await _contact(r, "1795593100.4")
        assert self_service.outcome == "self_service" and self_service.ended_at is not None
        assert (queued.outcome, unseen.outcome) == ("unobserved", "unobserved")
        assert queued.ended_at is not None and unseen.ended_at is not None
        assert kinds[-1] == "gap_ended" and unseen_kinds == ["gap_ended"]
        assert sms.outcome is None  # not a call
        # A Cdr that still arrives (a replay, a late batch) replaces "unobserved".
        await r.peer.play(chunks[index_of(chunks, "Event: Cdr"):])
        await r.settle()
        queued, _ = await _contact(r, ANSWERED_ID)
        assert (queued.outcome, queued.agent_id) == ("answered", await _agent_id(r, "agent1001"))


async def test_a_call_hung_up_after_the_reconnect_with_no_queue_events_gets_an_outcome(
        settings: Settings, db_url: str) -> None:
    """Bridge down from before the queue until the caller's last seconds: the Hangup alone closes it."""
    chunks = _split_at_caller_hangup(capture_chunks("answered"), ANSWERED_ID)
    caller_hangup = index_of(chunks, "Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/caller")
    cdr = index_of(chunks, "Event: Cdr")
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[:3])  # Newchannel
        await r.settle()
        async with r.ctx.db.transaction() as s:
            await open_contact(s, Channel.voice, call_id=ANSWERED_ID, language="ko", ivr_path="main>1")
        await _bridge_down(r)
        await r.peer.play(chunks[3:caller_hangup])
        await _bridge_up(r)
        await r.peer.play(chunks[caller_hangup:cdr])
        await r.settle()
        contact, _ = await _contact(r, ANSWERED_ID)
        assert contact.outcome == "unobserved" and contact.ended_at is not None


# -- what the rendered dialplan tells the bridge -----------------------------------------------

def _dialplan(settings: Settings) -> str:
    return render(settings)["extensions.conf"]


def _user_event(dialplan: str, name: str, variables: dict[str, str], channel: dict[str, str]) -> bytes:
    """The AMI event Asterisk 22 sends for the dialplan's ``UserEvent(name,Header: value,...)``."""
    found = re.search(rf"UserEvent\({name},(.*)\)\s*$", dialplan, re.MULTILINE)
    assert found, f"the dialplan sends no UserEvent {name}"
    body = re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], found.group(1))
    headers = [tuple(part.split(":", 1)) for part in body.split(",")]
    return encode_message([("Event", "UserEvent"), ("Privilege", "user,all"),
                           *((k, channel.get(k, "")) for k in _SNAPSHOT), ("UserEvent", name),
                           *((k.strip(), v.strip()) for k, v in headers)])


def _caller_snapshot(chunks: list[bytes], uniqueid: str) -> dict[str, str]:
    for chunk in chunks:
        messages, _ = split_messages(chunk)
        for raw in messages:
            event = parse_message(raw)
            if event.get("Event") == "Newchannel" and event.get("Uniqueid") == uniqueid:
                return event
    raise ValueError(uniqueid)


async def test_fallback_calls_are_marked_from_the_dialplan(settings: Settings, db_url: str) -> None:
    dialplan = _dialplan(settings)
    ivr = dialplan[dialplan.index("[dasan-ivr]"):dialplan.index("[dasan-queue-options]")]
    fallback = ivr[ivr.index("n(fallback)"):ivr.index("Goto(dasan-queue,s,1)", ivr.index("n(fallback)"))]
    assert "UserEvent(DasanFallback," in fallback and "Set(CDR(userfield)=fallback)" in fallback
    # A killed FastAGI server leaves AGISTATUS=SUCCESS (asterisk facts): the empty QUEUE sends it here.
    answered = capture_chunks("answered")
    event = _user_event(dialplan, "DasanFallback", {"AGISTATUS": "SUCCESS"},
                        {**_caller_snapshot(answered, ANSWERED_ID), "Context": "dasan-ivr", "Exten": "s"})
    queue = index_of(answered, "Event: QueueCallerJoin")
    # The abandoned call's UserEvent went by while the bridge was away: its Cdr carries the mark.
    abandoned = [c.replace(b"UserField: \r\n", b"UserField: fallback\r\n") for c in capture_chunks("abandoned")]
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play([*answered[:queue], event, *answered[queue:]])
        await r.peer.play(abandoned)
        await r.settle()
        contact, kinds = await _contact(r, ANSWERED_ID)
        assert contact.ivr_fallback is True and contact.outcome == "answered"  # the mark keeps the outcome
        assert "ivr_fallback" in kinds
        contact, _ = await _contact(r, ABANDONED_ID)
        assert contact.ivr_fallback is True and contact.outcome == "abandoned"
        async with r.ctx.db.session() as s:
            data = (await s.execute(select(ContactEvent.data).where(ContactEvent.kind == "ivr_fallback"))).scalar_one()
        assert data["agi_status"] == "SUCCESS"


async def test_survey_digit_read_by_the_dialplan_while_the_ivr_is_down_is_stored(
        settings: Settings, db_url: str) -> None:
    dialplan = _dialplan(settings)
    queue = dialplan[dialplan.index("[dasan-queue]"):dialplan.index("[dasan-queue-exit]")]
    survey = queue[queue.index("n(survey)"):]
    # The dialplan asks only when the survey AGI did not run (it sets IVR_RESULT=hangup when it did).
    assert survey.index("AGI(agi://${IVR_HOST}/survey)") < survey.index('"${IVR_RESULT}" = "hangup"') \
        < survey.index("Read(SURVEY_SCORE,dasan/survey-question,1,,3,5)") < survey.index("UserEvent(DasanSurvey,")
    chunks = _split_at_caller_hangup(capture_chunks("answered"), ANSWERED_ID)
    snapshot = {**_caller_snapshot(chunks, ANSWERED_ID), "Context": "dasan-queue", "Exten": "s"}
    scored = _user_event(dialplan, "DasanSurvey", {"SURVEY_SCORE": "4", "CONTACT_ID": ""}, snapshot)
    caller_hangup = index_of(chunks, "Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/caller")
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play([*chunks[:caller_hangup], scored, *chunks[caller_hangup:]])
        await r.settle()
        contact, kinds = await _contact(r, ANSWERED_ID)
        assert contact.satisfaction == 4 and "survey_dialplan" in kinds
        # Replayed after a reconnect: stored once; a wrong key is no score.
        wrong = _user_event(dialplan, "DasanSurvey", {"SURVEY_SCORE": "9", "CONTACT_ID": ""},
                            {**snapshot, "Uniqueid": "1795593199.20", "Linkedid": "1795593199.20"})
        await r.peer.play([scored, wrong])
        await r.settle()
        contact, kinds = await _contact(r, ANSWERED_ID)
        assert contact.satisfaction == 4 and kinds.count("survey_dialplan") == 1
