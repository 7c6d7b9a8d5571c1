"""Queue callbacks against an AmiPeer that plays Asterisk 22's Local-channel Originate:
place in line, the citizen's leg decides success, retries per the queue's settings, the
original contact and citizen, opening hours and a missing trunk."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ivr.ami.callbacks import NO_TRUNK, CallbackDialer
from ivr.ami.ingest import Ingester
from ivr.ami.models import LiveCall
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db.models import CallbackRequest, Channel, Citizen, Contact, ContactEvent
from ivr.queues import CallbackPolicy, QueueConfig, load_queues
from ivr.records import get_or_create_citizen, open_contact
from ivr.speech.live_stream import live_stream_id
from tests.support.ami_harness import Rig, capture_chunks, index_of, rig, wait_for

TRUNK = "sip:gw.example.org:5060"


async def _request(r: Rig, phone: str, queue: str, requested_at: datetime) -> tuple[int, int, int]:
    """A callback request as the IVR leaves it: the caller's contact (with its citizen) and the row."""
    async with r.ctx.db.transaction() as s:
        citizen = await get_or_create_citizen(s, "phone", phone)
        contact = await open_contact(s, Channel.voice, citizen, call_id=f"cb-{phone}", language="en",
                                     outcome="callback")
        req = CallbackRequest(contact_id=contact.id, phone=phone, queue=queue, language="en",
                              requested_at=requested_at)
        s.add(req)
        await s.flush()
        return req.id, contact.id, citizen.id


def _queues(r: Rig, policy: CallbackPolicy, always_open: bool = True) -> QueueConfig:
    qconf = load_queues(r.ctx.settings.queues_dir)
    qconf.defaults.callback = policy
    if always_open:
        for queue in qconf.queues.values():
            queue.hours = "always"
    return qconf


def _dialer(r: Rig, policy: CallbackPolicy, trunk: str = TRUNK, always_open: bool = True) -> CallbackDialer:
    """A dialer wired into the bridge (it reads the dial results off the bridge's event stream)."""
    dialer = CallbackDialer(r.bridge.conn, r.ctx.db, _queues(r, policy, always_open), trunk)
    r.bridge.dialer = dialer
    r.bridge.ingester.wrapup_seconds, r.bridge.ingester.default_wrapup = {}, 0  # the agent is free at once
    return dialer


async def _request_row(r: Rig, req_id: int) -> CallbackRequest:
    async with r.ctx.db.session() as s:
        req = await s.get(CallbackRequest, req_id)
    assert req is not None
    return req


async def _run_until(r: Rig, dialer: CallbackDialer, req_id: int, status: str, attempts: int) -> CallbackRequest:
    """Tick (as the dialer's loop does) until the request has that status after that many attempts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        req = await _request_row(r, req_id)
        if (req.status, req.attempts) == (status, attempts):
            return req
        assert loop.time() < deadline, f"request stuck at {req.status}/{req.attempts}: {req.last_result}"
        await dialer.tick()
        await asyncio.sleep(0.02)


async def _timeline(r: Rig, contact_id: int) -> list[ContactEvent]:
    async with r.ctx.db.session() as s:
        return list((await s.execute(select(ContactEvent).where(ContactEvent.contact_id == contact_id)
                                     .order_by(ContactEvent.id))).scalars())


async def test_callback_waits_its_turn_then_retries_until_the_citizen_answers(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"en", "general-wide"}
        dialer = _dialer(r, CallbackPolicy(max_attempts=3, retry_seconds=[0]))
        now = datetime.now(UTC)
        req_id, contact_id, citizen_id = await _request(r, "+82 10-5555-1234", "en", now - timedelta(seconds=30))
        assert await dialer.tick() == []  # no agent of the queue is available yet

        await r.bridge.control.login("kim.minji")  # en, proficiency 3
        await r.settle()
        # A caller who joined the queue before the request is ahead of it.
        async with r.ctx.db.transaction() as s:
            s.add(LiveCall(linkedid="earlier-caller", queue="en", state="queued", joined_at=now - timedelta(seconds=60)))
        assert await dialer.tick() == []
        async with r.ctx.db.transaction() as s:
            await s.delete(await s.get(LiveCall, "earlier-caller"))

        screenpops = await r.ctx.bus.subscribe("agent.screenpop")
        r.peer.originate_results = ["Failure", "Success"]  # nobody took it in the queue; then answered
        assert await dialer.tick() == [req_id]
        req = await _run_until(r, dialer, req_id, "done", 2)
        assert req.last_result == "answered"
        originate = [a for a in r.peer.actions if a.get("Action") == "Originate"]
        assert [a["ChannelId"] for a in originate] == [f"callback-{req_id}-1", f"callback-{req_id}-2"]
        assert originate[0]["Channel"] == "Local/en@dasan-callback"
        assert (originate[0]["Context"], originate[0]["Exten"]) == ("dasan-callback-out", "01055551234")
        await r.settle()
        events = await _timeline(r, contact_id)
        results = [(e.data["attempt"], e.data["result"]) for e in events if e.kind == "callback_result"]
        assert results == [(1, "no_agent"), (2, "answered")]
        # The callback's call is the original contact's (defect 4): no stranger "callback-…" contact,
        # the screen-pop names the original contact and citizen, the counsellor is on the contact.
        async with r.ctx.db.session() as s:
            contacts = list((await s.execute(select(Contact.call_id))).scalars())
            contact = await s.get(Contact, contact_id)
        assert contacts == ["cb-+82 10-5555-1234"]
        assert contact is not None and contact.agent_id is not None and contact.outcome == "callback"
        kinds = [e.kind for e in events]
        assert kinds.count("callback_leg") == 2 and "agent_connected" in kinds and "queue_join" in kinds
        pops = []
        while (pop := await screenpops.get(timeout=0.5)) is not None:
            pops.append(pop)
        connected = [p for p in pops if p["event"] == "connected"]
        assert connected and all((p["contact_id"], p["citizen_id"]) == (contact_id, citizen_id) for p in connected)
        # as on inbound calls, the screen-pop names the live stream (speech.live_listen) of the
        # answered attempt's call, whose linkedid is the Originate's ChannelId
        assert {p["live_stream"] for p in connected} == {live_stream_id(f"callback-{req_id}-2")}, connected
        async with r.ctx.db.session() as s:
            citizen = await s.get(Citizen, citizen_id)
        assert citizen is not None and {p["caller"] for p in pops} == {citizen.identity}  # not the caller id "120"
        await screenpops.close()
        assert await dialer.tick() == []


async def test_with_live_listen_the_queued_half_stays_in_the_call(settings: Settings, db_url: str) -> None:
    """speech.live_listen: the citizen's live spy listens on the callback's queued Local half,
    so the dialer asks Asterisk not to optimize the Local channel away (/n)."""
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"en", "general-wide"}
        dialer = CallbackDialer(r.bridge.conn, r.ctx.db, _queues(r, CallbackPolicy(max_attempts=1)), TRUNK,
                                live_listen=True)
        r.bridge.dialer = dialer
        await r.bridge.control.login("kim.minji")
        await r.settle()
        req_id, _contact_id, _citizen_id = await _request(r, "+82 10-5555-7777", "en",
                                                           datetime.now(UTC) - timedelta(seconds=5))
        r.peer.originate_results = ["Success"]
        assert await dialer.tick() == [req_id]
        req = await _run_until(r, dialer, req_id, "done", 1)
        assert req.last_result == "answered"
        originate = [a for a in r.peer.actions if a.get("Action") == "Originate"]
        assert [a["Channel"] for a in originate] == ["Local/en@dasan-callback/n"]


async def test_busy_no_answer_congestion_are_retried_then_failed_with_the_reason(settings: Settings,
                                                                                 db_url: str) -> None:
    """The agent answering is not success (defect 2): the trunk's 486 Busy, a citizen who never
    answers and congestion are each an attempt that failed, with DialStatus and hang-up cause."""
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"en", "general-wide"}
        await r.bridge.control.login("kim.minji")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=3, retry_seconds=[0]))
        req_id, contact_id, _ = await _request(r, "01012345678", "en", datetime.now(UTC))
        r.peer.originate_results = ["BUSY", "NOANSWER", "CONGESTION"]
        req = await _run_until(r, dialer, req_id, "failed", 3)
        assert req.last_result == "congestion: DialStatus CONGESTION, cause 34 (Circuit/channel congestion)"
        results = [(e.data["result"], e.data["dial_status"], e.data["cause"]) for e in await _timeline(r, contact_id)
                   if e.kind == "callback_result"]
        assert results == [("busy", "BUSY", "17"), ("no_answer", "NOANSWER", "19"), ("congestion", "CONGESTION", "34")]
        await asyncio.sleep(0)
        assert await dialer.tick() == []  # failed for good


async def test_one_callback_per_queue_at_a_time(settings: Settings, db_url: str) -> None:
    """The oldest request of each queue is due; the next one of that queue waits while it is
    being dialled or waits for its retry time, and other queues are not held up."""
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=3, retry_seconds=[0]))
        now = datetime.now(UTC)
        first, _, _ = await _request(r, "01011110001", "vi", now - timedelta(seconds=60))
        second, _, _ = await _request(r, "01011110002", "vi", now - timedelta(seconds=30))
        other, _, _ = await _request(r, "01011110003", "general-wide", now - timedelta(seconds=10))
        assert [q.id for q in await dialer.due(now)] == [first, other]

        async def set_first(**values: object) -> None:
            async with r.ctx.db.transaction() as s:
                row = await s.get(CallbackRequest, first)
                assert row is not None
                for key, value in values.items():
                    setattr(row, key, value)

        await set_first(status="dialing")
        assert [q.id for q in await dialer.due(now)] == [other]  # not the second: its queue is busy
        await set_first(status="waiting", next_attempt_at=now + timedelta(hours=1))
        assert [q.id for q in await dialer.due(now)] == [other]  # the second waits behind the first
        assert [q.id for q in await dialer.due(now + timedelta(hours=2))] == [first, other]
        assert second not in [q.id for q in await dialer.due(now + timedelta(hours=2))]


async def test_retries_follow_the_queue_callback_settings(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=2, retry_seconds=[0]))
        dialer.qconf.queues["vi"].callback = CallbackPolicy(max_attempts=2, retry_seconds=[3600])
        req_id, _, _ = await _request(r, "01012345678", "vi", datetime.now(UTC))
        r.peer.originate_results = ["NOTRUNK"]
        req = await _run_until(r, dialer, req_id, "waiting", 1)
        assert req.last_result is not None and req.last_result.startswith("failed: hung up before dialling: cause 34")
        next_at = req.next_attempt_at.replace(tzinfo=UTC) if req.next_attempt_at.tzinfo is None else req.next_attempt_at  # type: ignore[union-attr]
        assert next_at > datetime.now(UTC) + timedelta(seconds=3000)  # the queue's own retry wait
        assert await dialer.tick() == []
        assert await dialer.tick(datetime.now(UTC) + timedelta(seconds=3601)) == [req_id]
        await _run_until(r, dialer, req_id, "done", 2)


async def test_dials_only_within_opening_hours_and_never_without_a_trunk(settings: Settings, db_url: str) -> None:
    """Defect 6: the en line opens at 09:00 KST; no trunk_contact means no dialling at all."""
    seoul = ZoneInfo("Asia/Seoul")
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"en", "general-wide"}
        await r.bridge.control.login("kim.minji")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(), always_open=False)
        monday = datetime(2026, 12, 7, 8, 50, tzinfo=seoul)  # a Monday, no holiday
        req_id, _, _ = await _request(r, "01012345678", "en", monday - timedelta(hours=10))
        assert await dialer.due(monday.astimezone(UTC)) == []
        assert [q.id for q in await dialer.due(monday.replace(hour=9, minute=0).astimezone(UTC))] == [req_id]
        assert await dialer.due(monday.replace(hour=22, minute=0).astimezone(UTC)) == []

        no_trunk = _dialer(r, CallbackPolicy(), trunk="")
        assert no_trunk.trunk_problem == NO_TRUNK
        assert await no_trunk.tick() == []
        await asyncio.wait_for(no_trunk.run(), 5)  # refuses at once instead of dialling
        assert not [a for a in r.peer.actions if a.get("Action") == "Originate"]
        assert (await _request_row(r, req_id)).status == "waiting"  # left pending

    settings.asterisk.trunk_contact = ""
    async with rig(settings, db_url, MemoryBus(), callbacks=True) as r:
        lines = [line async for line in _start_lines(r)]
        assert NO_TRUNK in lines


async def _start_lines(r: Rig):  # type: ignore[no-untyped-def]
    """What `dasan up` prints for the ami service of a fresh bridge."""
    await r.bridge.stop()
    from ivr.ami.service import AmiBridge

    r.bridge = AmiBridge(r.ctx, metrics_interval=0.05, callbacks=True)
    for line in await r.bridge.start():
        yield line


async def test_callback_leg_found_again_after_a_restart(settings: Settings, db_url: str) -> None:
    """The link callback call -> original contact is durable: a fresh ingester (restarted
    bridge) files the rest of the call under the original contact, not a new one."""
    async with rig(settings, db_url, MemoryBus()) as r:
        req_id, contact_id, _ = await _request(r, "01012345678", "en", datetime.now(UTC))
        lid = f"callback-{req_id}-1"
        varset = {"Event": "VarSet", "Channel": "Local/en@dasan-callback-00000001;1", "Uniqueid": lid,
                  "Linkedid": lid, "Variable": "CONTACT_ID", "Value": str(contact_id)}
        join = {"Event": "QueueCallerJoin", "Channel": "Local/en@dasan-callback-00000001;2", "Uniqueid": f"{lid};2",
                "Linkedid": lid, "CallerIDNum": "120", "Queue": "en", "Position": "1", "Count": "1",
                "Context": "dasan-callback", "Exten": "en", "Priority": "1"}
        async with r.ctx.db.transaction() as s:
            await Ingester().apply(s, [varset])
        async with r.ctx.db.transaction() as s:
            await Ingester().apply(s, [join])  # a new ingester: nothing in memory
        async with r.ctx.db.session() as s:
            strays = (await s.execute(select(func.count()).select_from(Contact)
                                      .where(Contact.call_id == lid))).scalar_one()
        assert strays == 0
        assert [e.kind for e in await _timeline(r, contact_id)] == ["callback_leg", "queue_join"]


async def test_replay_capture_does_not_disturb_callbacks(settings: Settings, db_url: str) -> None:
    """A callback row and a live call from the captures coexist: metrics count both."""
    from ivr.ami.metrics import current_metrics

    chunks = capture_chunks("abandoned")
    async with rig(settings, db_url, MemoryBus()) as r:
        await r.peer.play(chunks[: index_of(chunks, "Event: QueueCallerJoin") + 1])
        await r.settle()
        await _request(r, "0212345678", "general-ko", datetime.now(UTC))
        q = (await current_metrics(r.ctx))["queues"]["general-ko"]
        assert (q["waiting"], q["callbacks_waiting"]) == (1, 1)


def _originates(r: Rig) -> list[dict[str, str]]:
    return [{k: v for k, v in a.items() if k not in ("ActionID", "Variable")} for a in r.peer.actions
            if a.get("Action") == "Originate"]


def _aware_at(value: datetime | None) -> datetime:
    assert value is not None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def test_each_attempt_sends_the_whole_originate_and_leaves_its_trace(settings: Settings,
                                                                          sqlite_url: str) -> None:
    """What Asterisk gets for each attempt (the Local half into the queue, the citizen's number
    at the out context, the ring time, our caller id, the ChannelId, the variables the dialplan
    and the ingester read), and on the contact's timeline each attempt and its result as the
    citizen's leg ended: unavailable, cancelled, then answered."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=3, retry_seconds=[0], ring_seconds=25))
        req_id, contact_id, citizen_id = await _request(r, "010-2222-3333", "vi", datetime.now(UTC))
        r.peer.originate_results = ["CHANUNAVAIL", "CANCEL", "Success"]
        req = await _run_until(r, dialer, req_id, "done", 3)
        assert req.last_result == "answered" and req.next_attempt_at is None and req.dialing_by is None
        assert _originates(r) == [
            {"Action": "Originate", "Channel": "Local/vi@dasan-callback", "Context": "dasan-callback-out",
             "Exten": "01022223333", "Priority": "1", "Async": "true", "Timeout": "25000", "CallerID": "120",
             "ChannelId": f"callback-{req_id}-{n}"} for n in (1, 2, 3)]
        assert r.peer.variables == [[f"CALLBACK_ID={req_id}", "QUEUE=vi", "LANG=en", f"CONTACT_ID={contact_id}",
                                     f"CITIZEN_ID={citizen_id}"]] * 3
        await r.settle()
        events = [e for e in await _timeline(r, contact_id) if e.kind in ("callback_attempt", "callback_result")]
        assert [(e.kind, e.external_id, e.data) for e in events] == [
            ("callback_attempt", f"callback:{req_id}:1", {"attempt": 1, "phone": "010-2222-3333", "queue": "vi",
                                                          "dialer": dialer.node}),
            ("callback_result", f"callback:{req_id}:1:result", {
                "attempt": 1, "result": "unavailable", "reason": "DialStatus CHANUNAVAIL, cause 1 (Unallocated "
                "(unassigned) number)", "dial_status": "CHANUNAVAIL", "cause": "1", "status": "waiting"}),
            ("callback_attempt", f"callback:{req_id}:2", {"attempt": 2, "phone": "010-2222-3333", "queue": "vi",
                                                          "dialer": dialer.node}),
            ("callback_result", f"callback:{req_id}:2:result", {
                "attempt": 2, "result": "cancelled", "reason": "DialStatus CANCEL, cause 16 (Normal Clearing)",
                "dial_status": "CANCEL", "cause": "16", "status": "waiting"}),
            ("callback_attempt", f"callback:{req_id}:3", {"attempt": 3, "phone": "010-2222-3333", "queue": "vi",
                                                          "dialer": dialer.node}),
            ("callback_result", f"callback:{req_id}:3:result", {
                "attempt": 3, "result": "answered", "reason": "", "dial_status": "ANSWER", "cause": None,
                "status": "done"}),
        ]


async def test_a_request_without_a_contact_is_dialled_with_only_its_own_variables(settings: Settings,
                                                                                  sqlite_url: str) -> None:
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=1))
        async with r.ctx.db.transaction() as s:
            req = CallbackRequest(contact_id=None, phone="+82 10 4444 5555", queue="vi", language="vi",
                                  requested_at=datetime.now(UTC))
            s.add(req)
            await s.flush()
            req_id = req.id
        r.peer.originate_results = ["Success"]
        await _run_until(r, dialer, req_id, "done", 1)
        assert r.peer.variables == [[f"CALLBACK_ID={req_id}", "QUEUE=vi", "LANG=vi"]]
        assert [a["Exten"] for a in _originates(r)] == ["01044445555"]


async def test_retry_waits_follow_the_list_and_its_last_value_repeats(settings: Settings, sqlite_url: str) -> None:
    """retry_seconds [60, 3600]: 60 s before the 2nd attempt, 3600 before the 3rd and the 4th;
    after max_attempts the request fails with the last result."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=4, retry_seconds=[60, 3600]))
        req_id, _, _ = await _request(r, "01012345678", "vi", datetime.now(UTC))
        r.peer.originate_results = ["NOANSWER"] * 4
        later = datetime.now(UTC)
        for attempt, wait in ((1, 60), (2, 3600), (3, 3600)):
            later += timedelta(hours=2)  # past any wait so far
            before = datetime.now(UTC)
            assert await dialer.tick(later) == [req_id]
            req = await _run_until(r, dialer, req_id, "waiting", attempt)
            after = datetime.now(UTC)
            next_at = _aware_at(req.next_attempt_at)
            assert before + timedelta(seconds=wait) <= next_at <= after + timedelta(seconds=wait), (attempt, next_at)
            assert await dialer.tick(next_at - timedelta(seconds=1)) == []  # not before its time
        assert await dialer.tick(later + timedelta(hours=2)) == [req_id]
        req = await _run_until(r, dialer, req_id, "failed", 4)
        assert req.last_result == "no_answer: DialStatus NOANSWER, cause 19 (User alerting, no answer)"


async def test_an_originate_asterisk_refuses_or_nobody_takes_is_a_failed_attempt_with_the_reason(
        settings: Settings, sqlite_url: str) -> None:
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=2, retry_seconds=[3600]))
        req_id, contact_id, _ = await _request(r, "01012345678", "vi", datetime.now(UTC))
        r.peer.originate_results = ["Failure"]
        assert await dialer.tick() == [req_id]
        req = await _run_until(r, dialer, req_id, "waiting", 1)
        assert req.last_result == "no_agent: no counsellor answered (Reason 0)"
        r.peer.denied.add("originate")  # the manager user lost the originate class
        assert await dialer.tick(datetime.now(UTC) + timedelta(hours=2)) == [req_id]
        req = await _run_until(r, dialer, req_id, "failed", 2)
        assert req.last_result == "no_agent: Permission denied"
        results = [(e.data["result"], e.data["reason"], e.data["status"]) for e in await _timeline(r, contact_id)
                   if e.kind == "callback_result"]
        assert results == [("no_agent", "no counsellor answered (Reason 0)", "waiting"),
                           ("no_agent", "Permission denied", "failed")]


async def test_the_citizens_leg_is_read_in_whatever_order_its_events_come(settings: Settings,
                                                                          sqlite_url: str) -> None:
    """Stasis orders events per channel only: the trunk leg's Hangup may come before the
    DialEnd (the result is taken at once, with its cause); a call whose legs never report
    ends as failed when the dialer stops waiting."""
    from ivr.ami.protocol import encode_message
    from tests.support.ami_peer import _originate_response

    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=3, retry_seconds=[3600]))
        req_id, _, _ = await _request(r, "01012345678", "vi", datetime.now(UTC))

        async def answered_by_a_counsellor(attempt: int) -> str:
            r.peer.originate_results = ["HOLD"]
            assert await dialer.tick(datetime.now(UTC) + timedelta(hours=2 * attempt)) == [req_id]
            await wait_for(lambda: len(r.peer.held) == attempt)
            held = r.peer.held[-1]
            await r.peer.play([_originate_response(held["ActionID"], held, "Success", "Local/vi@dasan-callback;1",
                                                   4, uniqueid=held["ChannelId"])])
            return held["ChannelId"]

        cid = await answered_by_a_counsellor(1)
        trunk = {"Channel": "PJSIP/trunk-00000001", "Uniqueid": "1765000000.77", "Linkedid": cid}
        await r.peer.play([encode_message({"Event": "Hangup", **trunk, "Cause": "17", "Cause-txt": "User busy"}),
                           encode_message({"Event": "DialEnd", "Channel": "Local/vi@dasan-callback;1",
                                           "Uniqueid": cid, "Linkedid": cid, "DestChannel": trunk["Channel"],
                                           "DestUniqueid": trunk["Uniqueid"], "DestLinkedid": cid,
                                           "DialStatus": "BUSY"})])
        req = await _run_until(r, dialer, req_id, "waiting", 1)
        assert req.last_result == "busy: DialStatus BUSY, cause 17 (User busy)"

        dialer.result_timeout = 0.3
        await answered_by_a_counsellor(2)  # and then nothing
        req = await _run_until(r, dialer, req_id, "waiting", 2)
        assert req.last_result == "failed: no dial result within 0 s"


async def test_nothing_is_dialled_while_asterisk_is_away(settings: Settings, sqlite_url: str) -> None:
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        dialer = _dialer(r, CallbackPolicy(max_attempts=1))
        req_id, _, _ = await _request(r, "01012345678", "vi", datetime.now(UTC))
        await r.peer.close()
        await wait_for(lambda: not r.bridge.conn.logged_in.is_set())
        assert await dialer.tick() == []
        req = await _request_row(r, req_id)
        assert (req.status, req.attempts) == ("waiting", 0)


async def test_a_dead_dialers_attempts_are_taken_over_by_what_asterisk_shows(settings: Settings,
                                                                             sqlite_url: str) -> None:
    """take_over, for requests whose dialer stopped renewing (lease over, or none written): a
    call still live in the queue was placed (failed, not dialled twice); one that never
    reached Asterisk is dialled again at once, unless it was the last attempt; a live lease
    is left alone. The contact's timeline says which node lost it and which took it over."""
    from ivr.db import Database

    db = Database(sqlite_url)
    qconf = load_queues(settings.queues_dir)
    now = datetime.now(UTC)
    try:
        async with db.transaction() as s:
            citizen = await get_or_create_citizen(s, "phone", "+82 10-7777-0101")
            contact = await open_contact(s, Channel.voice, citizen, call_id="cb-takeover", language="ko",
                                         outcome="callback")
            rows = {}
            for name, contact_id, attempts, until in (
                    ("live", contact.id, 1, now - timedelta(seconds=1)),   # its call is queued in Asterisk
                    ("again", None, 1, None),                               # no lease written: taken too
                    ("last", None, 3, now - timedelta(seconds=1)),          # the third of three attempts
                    ("alive", None, 1, now + timedelta(seconds=30))):       # its dialer renews: not taken
                req = CallbackRequest(contact_id=contact_id, phone="01077770101", queue="general-ko", language="ko",
                                      requested_at=now - timedelta(minutes=5), status="dialing", attempts=attempts,
                                      dialing_by="gone:1", dialing_until=until)
                s.add(req)
                await s.flush()
                rows[name] = req.id
            s.add(LiveCall(linkedid=f"callback-{rows['live']}-1", queue="general-ko", state="queued",
                           joined_at=now - timedelta(seconds=3)))
        survivor = CallbackDialer(None, db, qconf, TRUNK, node="survivor:2", lease=30)  # type: ignore[arg-type]
        assert await survivor.take_over(now) == sorted([rows["live"], rows["again"], rows["last"]])
        async with db.session() as s:
            got = {name: await s.get(CallbackRequest, rid) for name, rid in rows.items()}
        placed = ("lost_with_node: dialer gone:1 stopped during attempt {n} after Asterisk placed the call: its "
                  "result is unknown, so it is not dialled again (see the timeline) / 통화 결과를 알 수 없어 다시 걸지 않습니다")
        before = ("lost_with_node: dialer gone:1 stopped during attempt {n} before Asterisk placed the call: "
                  "nobody was called / 발신 전에 중단되었습니다")
        expected = {"live": ("failed", placed.format(n=1)[:200], None), "again": ("waiting", before.format(n=1), now),
                    "last": ("failed", before.format(n=3), None)}
        for name, (status, result, next_at) in expected.items():
            req = got[name]
            assert req is not None
            assert (req.status, req.last_result, req.dialing_by, req.dialing_until) == (status, result, None, None), name
            assert (None if req.next_attempt_at is None else _aware_at(req.next_attempt_at)) == next_at, name
        alive = got["alive"]
        assert alive is not None and (alive.status, alive.dialing_by) == ("dialing", "gone:1")
        async with db.session() as s:
            events = list((await s.execute(select(ContactEvent).where(ContactEvent.contact_id == contact.id,
                                                                      ContactEvent.kind == "callback_result"))).scalars())
        assert [(e.external_id, e.data) for e in events] == [(f"callback:{rows['live']}:1:result", {
            "attempt": 1, "result": "lost_with_node", "reason": placed.format(n=1)[len("lost_with_node: "):],
            "dial_status": None, "cause": None, "status": "failed", "dialer": "gone:1", "taken_over_by": "survivor:2"})]
        assert await survivor.take_over(now) == []  # nothing left to take
    finally:
        await db.dispose()
