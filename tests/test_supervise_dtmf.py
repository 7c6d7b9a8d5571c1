"""A supervisor's mode switches during ChanSpy (4 listen, 5 whisper, 6 barge) are audited by the
AMI bridge like the start (issue #18), from Asterisk 22's ``DTMFEnd`` events sent by the AMI
peer with the headers of main/manager_channels.c ``channel_dtmf_end_cb`` (the channel snapshot
of ``ast_manager_build_channel_state_string``, then Digit, DurationMs, Direction). The live
session on a real Asterisk is in tests/test_supervise_asterisk.py."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.ami.supervise import CONTEXT, SpyModes, other_context_regex
from ivr.bus import Bus
from ivr.config import Settings
from ivr.db.models import AuditLog
from ivr.queues import AgentDef
from tests.support.ami_harness import rig
from tests.support.waiting import eventually
from tests.test_supervise import give_phone

SUPER_CHANNEL, SUPER_UID = "PJSIP/super9001-0000000a", "1700000100.20"


def dtmf_end(digit: str, direction: str = "Received", context: str = CONTEXT, exten: str = "listen",
             channel: str = SUPER_CHANNEL, uniqueid: str = SUPER_UID) -> list[tuple[str, str]]:
    """One DTMFEnd as Asterisk 22 frames it for the supervisor's originated channel: its caller
    id is the Originate's CallerID ("<mode> <agent's extension>"), its extension the start mode."""
    return [("Event", "DTMFEnd"), ("Privilege", "dtmf,all"), ("Timestamp", "1700000123.456789"),
            ("Channel", channel), ("ChannelState", "6"), ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "agent1001"), ("CallerIDName", exten), ("ConnectedLineNum", "super9001"),
            ("ConnectedLineName", "<unknown>"), ("Language", "en"), ("AccountCode", ""),
            ("Context", context), ("Exten", exten), ("Priority", "3"), ("Uniqueid", uniqueid),
            ("Linkedid", uniqueid), ("Digit", digit), ("DurationMs", "120"), ("Direction", direction)]


async def test_each_mode_switch_by_the_supervisors_keys_is_audited(settings: Settings, db_url: str, bus: Bus) -> None:
    give_phone(settings)  # super1 = super9001
    results = await bus.subscribe("live.supervise")
    async with rig(settings, db_url, bus) as r:
        async with r.ctx.db.transaction() as session:  # kim.minji (agent1001) talks on a call
            session.add(LiveCall(linkedid="1700000001.5", state="connected",
                                 queue="general-ko", agent="agent1001", joined_at=datetime.now(UTC)))
        ignored = [
            dtmf_end("5", direction="Sent"),  # sent to the phone, not pressed
            dtmf_end("6", context="dasan-ivr"),  # a citizen's key in the menu
            dtmf_end("6", context="dasan-supervise-x"),
            dtmf_end("1"), dtmf_end("*"), dtmf_end("#"),  # not a mode key
            dtmf_end("4"),  # listen while listening: no switch
            [("Event", "DTMFBegin"), ("Privilege", "dtmf,all"), *dtmf_end("5")[2:-2], ("Direction", "Received")],
        ]
        for event in [*ignored, dtmf_end("5"), dtmf_end("5"), dtmf_end("6"), dtmf_end("4")]:
            await r.peer.emit(event)
        await r.settle()
        async with r.ctx.db.session() as session:
            rows = list((await session.execute(select(AuditLog).where(AuditLog.action == "supervise")
                                               .order_by(AuditLog.id))).scalars())
        assert [(a.actor, a.target, a.data["mode"], a.data["from"], a.data["call"], a.at is not None)
                for a in rows] == [
            ("super1", "agent:kim.minji", "whisper", "listen", "1700000001.5", True),
            ("super1", "agent:kim.minji", "barge", "whisper", "1700000001.5", True),
            ("super1", "agent:kim.minji", "listen", "barge", "1700000001.5", True)]
        # The supervisor's wallboard shows the session's mode.
        shown = [await results.get(timeout=5) for _ in rows]
        assert [(m["username"], m["mode"], m["switched"]) for m in shown if m] == [
            ("super1", "whisper", True), ("super1", "barge", True), ("super1", "listen", True)]

        # The channel hung up: a new session on the same channel id starts from its extension.
        await r.peer.emit([("Event", "Hangup"), ("Privilege", "call,all"), ("Channel", SUPER_CHANNEL),
                           ("Uniqueid", SUPER_UID), ("Linkedid", SUPER_UID), ("Cause", "16")])
        await r.peer.emit(dtmf_end("6", exten="barge"))  # started in barge: 6 is no switch
        await r.peer.emit(dtmf_end("4", exten="barge"))
        await r.settle()

        async def last() -> AuditLog | None:
            async with r.ctx.db.session() as session:
                return (await session.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(1))).scalar_one()

        row = await eventually(last, what="the switch's row")
        assert row is not None and (row.data["mode"], row.data["from"]) == ("listen", "barge")
        async with r.ctx.db.session() as session:
            assert len((await session.execute(select(AuditLog).where(AuditLog.action == "supervise"))).all()) == 4
    await results.close()


def test_spy_modes_names_an_unknown_phone_by_its_endpoint() -> None:
    spies = SpyModes([AgentDef(username="kim.minji", name="김민지", extension="agent1001")])
    event = dict(dtmf_end("6", channel="PJSIP/desk-7-00000001"))
    [switch] = spies.observe([event])
    assert (switch.supervisor, switch.agent, switch.mode, switch.previous) == ("desk-7", "kim.minji", "barge", "listen")
    assert spies.observe([{"Event": "DTMFEnd"}]) == []  # an unparsed event (kept by name only)


def test_the_manager_filter_lets_only_the_supervise_context_through() -> None:
    """manager.conf excludes a DTMFEnd whose Context matches this regex; Asterisk compiles it
    with regcomp(REG_EXTENDED): checked with grep -E (POSIX ERE), as well as Python's re."""
    regex = other_context_regex()
    values = ["dasan-supervise", "dasan-ivr", "d", "dasan-supervis", "dasan-supervise2", "default", "xdasan-supervise"]
    out = subprocess.run(["grep", "-E", regex], input="\n".join(values) + "\n", capture_output=True, text=True)
    assert out.stdout.split() == values[1:]
    assert [v for v in values if re.search(regex, v)] == values[1:]


def test_the_bridges_ami_user_reads_dtmf_of_the_supervise_context_only() -> None:
    from ivr.asterisk.render import render

    text = render(Settings())["manager.conf"]
    user = text.split("\n[dasan]\n", 1)[1].split("\n[", 1)[0]
    assert "read = system,call,agent,user,cdr,dialplan,reporting,dtmf\n" in user
    assert "eventfilter(action(exclude),name(DTMFBegin)) =\n" in user
    assert (f"eventfilter(action(exclude),name(DTMFEnd),header(Context),method(regex)) = {other_context_regex()}\n"
            in user)
