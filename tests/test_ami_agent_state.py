"""Agent state never sticks (issue #15 defect 3): wrap-up ends by the queue's wrap-up time
without any event from Asterisk, and QueueStatus is checked periodically against the database."""

from __future__ import annotations

from ivr.ami.models import AgentState
from ivr.bus import MemoryBus
from ivr.config import Settings
from tests.support.ami_harness import Rig, rig, wait_for


async def _state(r: Rig, username: str) -> AgentState:
    async with r.ctx.db.session() as s:
        state = await s.get(AgentState, username)
    assert state is not None
    return state


def _agent_complete(queue: str, interface: str) -> list[tuple[str, str]]:
    return [("Event", "AgentComplete"), ("Privilege", "agent,all"), ("Channel", "PJSIP/caller-00000001"),
            ("Uniqueid", "1795600000.1"), ("Linkedid", "1795600000.1"), ("CallerIDNum", "01012345678"),
            ("DestChannel", f"{interface}-00000002"), ("DestUniqueid", "1795600000.2"), ("Queue", queue),
            ("Interface", interface), ("MemberName", "kim.minji"), ("HoldTime", "3"), ("TalkTime", "20"),
            ("Reason", "caller")]


async def test_wrapup_ends_by_the_queue_wrapup_time_without_an_event(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"en", "general-wide"}
        r.bridge.ingester.wrapup_seconds = {"general-ko": 1, "general-wide": 1, "en": 1}
        updates = await r.ctx.bus.subscribe("live.agents")
        await r.bridge.control.login("kim.minji")
        await r.settle()
        assert (await _state(r, "kim.minji")).state == "available"
        # The call ends; Asterisk says "Not in use" once, then nothing more.
        member = r.peer.members[("general-ko", "PJSIP/agent1001")]
        await r.peer.emit(_agent_complete("general-ko", "PJSIP/agent1001"))
        await r.peer.emit([("Event", "QueueMemberStatus"), ("Privilege", "agent,all"),
                           *((k, member[k]) for k in ("Queue", "MemberName", "Interface", "StateInterface",
                                                      "Membership", "Penalty", "CallsTaken", "LastCall",
                                                      "LastPause", "LoginTime")),
                           ("InCall", "0"), ("Status", "1"), ("Paused", "0"), ("PausedReason", ""),
                           ("Ringinuse", "1"), ("Wrapuptime", "0")])
        await r.settle()
        assert (await _state(r, "kim.minji")).state == "wrapup"
        states: list[str] = []

        async def available() -> bool:
            while (message := await updates.get(timeout=5)) is not None:
                if message.get("username") == "kim.minji":
                    states.append(message["state"])
                    if message["state"] == "available" and "wrapup" in states:
                        return True
            return False

        assert await available(), f"no end of wrap-up published: {states}"
        assert (await _state(r, "kim.minji")).state == "available"
        await updates.close()


async def test_agent_state_is_checked_against_queuestatus_periodically(settings: Settings, db_url: str) -> None:
    settings.ami.reconcile_seconds = 0.2
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"en", "general-wide"}
        await r.bridge.control.login("kim.minji")
        await r.settle()
        assert (await _state(r, "kim.minji")).state == "available"
        # Asterisk paused the member (e.g. from the phone) and we never saw the event.
        for (_queue, interface), member in r.peer.members.items():
            if interface == "PJSIP/agent1001":
                member.update(Paused="1", PausedReason="phone")

        def checks() -> int:
            return sum(a.get("Action") == "QueueStatus" for a in r.peer.actions)

        state = await _state(r, "kim.minji")
        for _ in range(20):  # each round: one more QueueStatus answered and applied
            if state.state == "paused":
                break
            asked = checks()
            await wait_for(lambda n=asked: checks() >= n + 1)  # type: ignore[misc]
            await r.settle()
            state = await _state(r, "kim.minji")
        assert (state.state, state.paused, state.reason) == ("paused", True, "phone")
