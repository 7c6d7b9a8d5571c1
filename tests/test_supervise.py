"""Supervisors listen in (issue #18): the live call list, who may listen / whisper / barge, the
audit of every request, the Originate the AMI bridge sends for it, and the plain refusal of
agent actions while the phone system is down. The real ChanSpy session on a real Asterisk is in
tests/test_supervise_asterisk.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.ami.service import ami_status
from ivr.ami.supervise import SuperviseError, originate_action
from ivr.config import Settings
from ivr.console.phone_status import PhoneStatus
from ivr.db.models import AuditLog, Contact
from ivr.queues import load_queues
from tests.support.console import Console, prepare_settings, serve_console
from tests.support.waiting import eventually

SUPERVISOR_PHONE = "\n  - username: super1\n    name: 관리자 1\n    extension: super9001\n"


def give_phone(settings: Settings) -> None:
    """super1's desk phone: an agents.yaml entry with no skills (no queue offers it calls)."""
    path = settings.queues_dir / "agents.yaml"
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + SUPERVISOR_PHONE, encoding="utf-8")


@pytest.fixture
async def console(settings: Settings, db_url: str, tmp_path: Path) -> AsyncIterator[Console]:
    settings.database.url = db_url
    prepare_settings(settings, tmp_path)
    give_phone(settings)
    async with serve_console(settings) as c:
        yield c


async def live_calls(console: Console, talking_seconds: int = 95) -> None:
    """kim.minji talks to the seeded caller (who came through the menu); another caller waits."""
    now = datetime.now(UTC)
    async with console.ctx.db.transaction() as session:
        contact = await session.get(Contact, console.ids["current"])
        assert contact is not None
        contact.ivr_path = "main > 2 > queue:general-ko"
        session.add_all([
            LiveCall(linkedid="1700000001.5", contact_id=contact.id, queue="general-ko", state="connected",
                     joined_at=now - timedelta(seconds=talking_seconds), agent="agent1001"),
            LiveCall(linkedid="1700000002.9", contact_id=None, queue="en", state="queued",
                     joined_at=now - timedelta(seconds=20), agent=None),
        ])


async def test_only_supervisors_list_and_listen_and_every_use_is_audited(console: Console, login: Any) -> None:
    await live_calls(console)
    agent, reviewer, supervisor = await login("kim.minji"), await login("review1"), await login("super1")
    for who in (agent, reviewer):
        assert (await who.call("GET", "/api/console/calls"))[0] == 403
        status, _ = await who.call("POST", "/api/console/calls/supervise", json={"call": "1700000001.5", "mode": "listen"})
        assert status == 403

    status, body = await supervisor.call("GET", "/api/console/calls")
    assert status == 200 and body["modes"] == ["listen", "whisper", "barge"]
    talking = next(c for c in body["items"] if c["call"] == "1700000001.5")
    assert (talking["agent"], talking["agent_name"], talking["queue"], talking["state"]) == (
        "kim.minji", "김민지", "general-ko", "connected")
    assert talking["caller"] == "+821012345678"
    assert talking["menu_path"] == ["main", "2", "queue:general-ko"]
    waiting = next(c for c in body["items"] if c["call"] == "1700000002.9")
    assert (waiting["state"], waiting["agent"], waiting["menu_path"]) == ("queued", None, [])

    # Refused with the reason: a bad mode, a call nobody answered yet, a call that is gone.
    for payload, expected in (({"call": "1700000001.5", "mode": "spy"}, 400),
                              ({"call": "1700000002.9", "mode": "listen"}, 409),
                              ({"call": "nope", "mode": "barge"}, 409)):
        status, answer = await supervisor.call("POST", "/api/console/calls/supervise", json=payload)
        assert status == expected, answer
        assert answer["error"]
    # An admin may, but has no phone in agents.yaml: told how to get one.
    admin = await login("admin1")
    status, answer = await admin.call("POST", "/api/console/calls/supervise", json={"call": "1700000001.5", "mode": "listen"})
    assert status == 409 and "agents.yaml" in answer["error"]

    for mode in ("listen", "barge"):
        status, answer = await supervisor.call("POST", "/api/console/calls/supervise",
                                               json={"call": "1700000001.5", "mode": mode})
        assert status == 202, answer
    jobs = await console.ctx.bus.consume("agent.commands", "t", "t", count=10, block=2)
    assert [j.data for j in jobs] == [
        {"action": "supervise", "username": "super1", "supervisor": "super1", "agent": "kim.minji", "mode": mode,
         "call": "1700000001.5"} for mode in ("listen", "barge")]
    async with console.ctx.db.session() as session:
        audits = list((await session.execute(select(AuditLog).where(AuditLog.action == "supervise")
                                             .order_by(AuditLog.id))).scalars())
    assert [(a.actor, a.target, a.data["mode"], a.data["call"], a.data["contact_id"]) for a in audits] == [
        ("super1", "agent:kim.minji", mode, "1700000001.5", console.ids["current"]) for mode in ("listen", "barge")]
    assert all(a.at is not None for a in audits)


async def test_originate_rings_the_supervisor_into_chanspy_on_the_agent(console: Console) -> None:
    await live_calls(console)
    qconf = load_queues(console.ctx.settings.queues_dir)
    action = await originate_action(console.ctx.db, qconf, {"supervisor": "super1", "agent": "kim.minji", "mode": "whisper"})
    assert action["Channel"] == "PJSIP/super9001"
    assert (action["Context"], action["Exten"], action["Priority"]) == ("dasan-supervise", "whisper", "1")
    assert "SPY_TARGET=PJSIP/agent1001-" in action["Variable"]
    for command, why in (({"supervisor": "super1", "agent": "lee.junho", "mode": "listen"}, "not on a call"),
                         ({"supervisor": "kim.minji", "agent": "kim.minji", "mode": "listen"}, "your own call"),
                         ({"supervisor": "nobody", "agent": "kim.minji", "mode": "listen"}, "no phone"),
                         ({"supervisor": "super1", "agent": "kim.minji", "mode": "shout"}, "mode")):
        with pytest.raises(SuperviseError, match=why):
            await originate_action(console.ctx.db, qconf, command)


async def test_agent_action_while_the_phone_system_is_down_says_why(console: Console, login: Any) -> None:
    agent, supervisor = await login("kim.minji"), await login("super1")
    bus = console.ctx.bus

    async def phone(reason: str | None) -> bool:  # what the web process has heard on live.ami
        return (await supervisor.call("GET", "/api/console/calls"))[1]["phone"]["reason"] == reason

    assert (await supervisor.call("GET", "/api/console/calls"))[1]["phone"]["known"] is False
    await bus.publish("live.ami", ami_status("connecting", False))
    await eventually(lambda: phone("down"), what="the web process hearing live.ami")
    status, answer = await agent.call("POST", "/api/console/agent/state", json={"action": "login"})
    assert status == 503 and "Asterisk" in answer["error"] and "연결할 수 없습니다" in answer["error"]
    assert await bus.consume("agent.commands", "t", "t", count=10, block=0.2) == []  # nothing queued
    async with console.ctx.db.session() as session:
        audit = (await session.execute(select(AuditLog).where(AuditLog.action == "agent_action_refused"))).scalars().first()
    assert audit is not None and audit.data["requested"] == "login"

    await bus.publish("live.ami", ami_status("connected", True))
    await eventually(lambda: phone(None), what="the phone system back")
    status, _ = await agent.call("POST", "/api/console/agent/state", json={"action": "login"})
    assert status == 202


def test_phone_status_tells_a_missing_bridge_from_a_site_without_one() -> None:
    status = PhoneStatus()
    assert status.snapshot()["known"] is False and status.problem() is None  # nothing heard yet
    status.expect_bridge, status.started = True, time.monotonic() - 60  # ami.enabled, a minute in
    snap = status.snapshot()
    assert (snap["known"], snap["connected"], snap["reason"]) == (True, False, "silent")
    assert status.problem() is None  # requests still go to the bus: the bridge may start any moment
    status.heard(ami_status("connected", True))
    assert status.snapshot()["connected"] is True and status.bus_lag is not None and status.bus_lag >= 0
    status.heard(ami_status("login refused", False))
    assert status.snapshot()["reason"] == "down" and status.problem() is not None
