"""Agent log-in/out, pause and restore through AMI actions against the AMI peer, with a real DB."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from ivr.ami.metrics import current_metrics
from ivr.ami.models import AgentState
from ivr.bus import Bus, MemoryBus
from ivr.config import Settings
from ivr.db.models import Agent, AgentSkill
from tests.support.ami_harness import rig, wait_for
from tests.support.ami_peer import AmiPeer
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent

KIM_QUEUES = {"en": "2", "general-ko": "0", "general-wide": "0"}  # proficiency 3, 5, 5 -> penalty 5 - p


async def _state(r, username: str) -> AgentState:  # type: ignore[no-untyped-def]
    async with r.ctx.db.session() as s:
        state = await s.get(AgentState, username)
    assert state is not None
    return state


async def test_login_pause_unpause_logout(settings: Settings, db_url: str, bus: Bus) -> None:
    agents = await bus.subscribe("live.agents")
    async with rig(settings, db_url, bus) as r:
        r.peer.queues |= {"general-wide", "en"}
        async with r.ctx.db.session() as s:  # agents.yaml synced into agents/agent_skills
            kim = (await s.execute(select(Agent).where(Agent.username == "kim.minji"))).scalar_one()
            skills = (await s.execute(select(AgentSkill).where(AgentSkill.agent_id == kim.id))).scalars().all()
        assert kim.extension == "agent1001" and len(skills) == 3

        result = await r.bridge.control.login("kim.minji")
        assert result.queues == ["en", "general-ko", "general-wide"]
        adds = [a for a in r.peer.actions if a.get("Action") == "QueueAdd"]
        assert {a["Queue"]: a["Penalty"] for a in adds} == KIM_QUEUES
        assert {a["Interface"] for a in adds} == {"PJSIP/agent1001"}
        await wait_for(lambda: len(r.peer.members) == 3)
        await r.settle()
        state = await _state(r, "kim.minji")
        assert (state.state, state.logged_in, state.queues) == (
            "available", True, {q: int(p) for q, p in KIM_QUEUES.items()})

        await r.bridge.control.pause("kim.minji", "점심 lunch")
        await r.settle()
        state = await _state(r, "kim.minji")
        assert (state.state, state.reason) == ("paused", "점심 lunch")
        metrics = await current_metrics(r.ctx)
        assert metrics["queues"]["general-ko"]["agents"]["paused"] == 1
        assert metrics["agents"]["paused"] == 1

        await r.bridge.control.unpause("kim.minji")
        await r.settle()
        assert (await _state(r, "kim.minji")).state == "available"

        await r.bridge.control.logout("kim.minji")
        await r.settle()
        state = await _state(r, "kim.minji")
        assert (state.state, state.logged_in, state.queues) == ("logged_out", False, {})
        seen = []
        while (msg := await agents.get(timeout=0.5)) is not None:
            seen.append(msg["state"])
        assert {"available", "paused", "logged_out"} <= set(seen)
    await agents.close()


async def test_state_survives_restarts_of_bridge_and_asterisk(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"general-wide", "zh"}
        await r.bridge.control.login("lee.junho")
        await r.bridge.control.pause("lee.junho", "training")
        await r.settle()
        # Asterisk restarts without persistent members; the bridge restarts too.
        r.peer.restart()
        await r.restart_bridge()
        await wait_for(lambda: len(r.peer.members) == 3)
        assert all(m["Paused"] == "1" and m["PausedReason"] == "training" for m in r.peer.members.values())
        await r.settle()
        state = await _state(r, "lee.junho")
        assert (state.state, state.reason, sorted(state.queues)) == ("paused", "training", ["general-ko", "general-wide", "zh"])


async def test_app_queue_reload_that_dropped_members_is_repaired(settings: Settings, db_url: str) -> None:
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"general-wide", "ja", "sign-video"}
        await r.bridge.control.login("park.soyeon")
        await r.settle()
        # A queue vanished from queues.conf and came back: app_queue destroyed it with its members.
        r.peer.members = {k: v for k, v in r.peer.members.items() if k[0] != "ja"}
        await r.peer.emit({"Event": "Reload", "Privilege": "system,all", "Module": "app_queue", "Status": "0"})
        await wait_for(lambda: ("ja", "PJSIP/agent1003") in r.peer.members)
        assert r.peer.members[("ja", "PJSIP/agent1003")]["Penalty"] == "0"


async def test_pause_drift_is_repaired_both_ways(settings: Settings, db_url: str) -> None:
    """Asterisk's members kept but their pause changed behind our back (app_queue reloaded, a
    CLI command): the next restore sends QueuePause to match what the agent asked for."""
    reload = {"Event": "Reload", "Privilege": "system,all", "Module": "app_queue", "Status": "0"}
    async with rig(settings, db_url, MemoryBus()) as r:
        r.peer.queues |= {"general-wide", "zh"}
        await r.bridge.control.login("lee.junho")
        await r.bridge.control.pause("lee.junho", "training")
        await r.settle()
        members = sorted(r.peer.members)
        assert len(members) == 3
        for member in r.peer.members.values():
            member["Paused"], member["PausedReason"] = "0", ""
        before = len(r.peer.actions)
        await r.peer.emit(reload)
        await wait_for(lambda: all(m["Paused"] == "1" for m in r.peer.members.values()))
        sent = r.peer.actions[before:]
        assert sorted((a["Queue"], a["Interface"], a["Paused"], a.get("Reason")) for a in sent
                      if a.get("Action") == "QueuePause") == [(q, i, "true", "training") for q, i in members]
        assert not [a for a in sent if a.get("Action") == "QueueAdd"]  # nobody was missing

        await r.bridge.control.unpause("lee.junho")
        await r.settle()
        for member in r.peer.members.values():
            member["Paused"] = "1"
        before = len(r.peer.actions)
        await r.peer.emit(reload)
        await wait_for(lambda: all(m["Paused"] == "0" for m in r.peer.members.values()))
        assert sorted((a["Queue"], a["Interface"], a["Paused"], a.get("Reason"))
                      for a in r.peer.actions[before:] if a.get("Action") == "QueuePause") == [
            (q, i, "false", None) for q, i in members]


async def test_agent_commands_stream(settings: Settings, db_url: str, bus: Bus) -> None:
    async with rig(settings, db_url, bus) as r:
        r.peer.queues |= {"vi", "general-wide"}
        reports = await bus.subscribe("live.agents")
        await bus.enqueue("agent.commands", {"action": "login", "username": "nguyen.thu"})
        await bus.enqueue("agent.commands", {"action": "pause", "username": "nguyen.thu", "reason": "break"})
        await bus.enqueue("agent.commands", {"action": "dance", "username": "nguyen.thu"})
        await wait_for(lambda: any(a.get("Action") == "QueuePause" for a in r.peer.actions), timeout=15)
        await wait_for(lambda: all(m["Paused"] == "1" for m in r.peer.members.values()) and r.peer.members)
        await r.settle()
        state = await _state(r, "nguyen.thu")
        assert (state.state, state.reason) == ("paused", "break")
        # The command the bridge cannot run is reported to the console, not silently dropped,
        # and nothing is sent to Asterisk for it.
        refusal = None
        while refusal is None:
            report = await reports.get(timeout=15)
            assert report is not None, "no report of the refused command"
            if "error" in report:
                refusal = report
        assert refusal == {"username": "nguyen.thu", "action": "dance", "retrying": False,
                           "error": "unknown action 'dance' (login|logout|pause|unpause|supervise)"}
        assert not [a for a in r.peer.actions if "dance" in json.dumps(a).lower()]
        await reports.close()

        async def all_acked() -> bool:
            return await bus.pending("agent.commands", "ami-bridge") == 0

        await eventually(all_acked, "every command acked")


def test_cli_agent_login_and_metrics(tmp_path: Path, sqlite_url: str) -> None:
    async def serve_and_run() -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str], AmiPeer]:
        peer = AmiPeer("cli", "cli-secret-1")
        peer.queues |= {"general-wide", "en"}
        port = await peer.start()
        env = {**os.environ, "DASAN__DATABASE__URL": sqlite_url, "DASAN__AMI__PORT": str(port),
               "DASAN__AMI__USERNAME": "cli", "DASAN__AMI__SECRET": "cli-secret-1",
               "DASAN__DATA_DIR": str(tmp_path / "var")}
        cmd = [sys.executable, "-m", "ivr.cli"]
        login = await asyncio.to_thread(subprocess.run, [*cmd, "agent", "login", "kim.minji"], env=env,
                                        capture_output=True, text=True, timeout=60, cwd=ROOT)
        metrics = await asyncio.to_thread(subprocess.run, [*cmd, "metrics"], env=env, capture_output=True,
                                          text=True, timeout=60, cwd=ROOT)
        await peer.close()
        return login, metrics, peer

    login, metrics, peer = asyncio.run(serve_and_run())
    assert login.returncode == 0, login.stderr
    assert "kim.minji: logged in to en, general-ko, general-wide" in login.stdout
    assert len(peer.members) == 3
    assert metrics.returncode == 0, metrics.stderr
    data = json.loads(metrics.stdout)
    assert data["service_level_seconds"] == 20 and "general-ko" in data["queues"]


def test_cli_agent_login_without_asterisk_fails_clearly(tmp_path: Path, sqlite_url: str) -> None:
    env = {**os.environ, "DASAN__DATABASE__URL": sqlite_url, "DASAN__AMI__PORT": "1",
           "DASAN__DATA_DIR": str(tmp_path / "var")}
    done = subprocess.run([sys.executable, "-m", "ivr.cli", "agent", "login", "kim.minji", "--timeout", "1"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert "cannot log in to ami://dasan@127.0.0.1:1" in done.stderr


async def test_supervise_rings_the_supervisor_and_says_whether_the_phone_answered(settings: Settings,
                                                                                 sqlite_url: str) -> None:
    """The bridge's side of listen/whisper/barge: the Originate of ivr.ami.supervise sent as is,
    answered when Asterisk's OriginateResponse says Success, refused with Asterisk's Reason
    when the supervisor's phone did not answer, and nothing sent for a call that is not there."""
    from datetime import UTC, datetime, timedelta

    import pytest

    from ivr.ami.agents import AgentCommandError
    from ivr.ami.models import LiveCall

    agents = settings.queues_dir / "agents.yaml"  # super1's desk phone (no skills: no queue calls it)
    agents.write_text(agents.read_text(encoding="utf-8").rstrip("\n")
                      + "\n  - username: super1\n    name: 관리자 1\n    extension: super9001\n", encoding="utf-8")
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        async with r.ctx.db.transaction() as session:  # kim.minji (agent1001) talks to a caller
            session.add(LiveCall(linkedid="1700000001.5", contact_id=None, queue="general-ko", state="connected",
                                 joined_at=datetime.now(UTC) - timedelta(seconds=30), agent="agent1001"))
        command = {"action": "supervise", "username": "super1", "supervisor": "super1", "agent": "kim.minji",
                   "mode": "whisper"}
        result = await r.bridge.control.run(command)
        assert result.as_dict() == {"username": "super1", "action": "supervise", "queues": [],
                                    "message": "whisper on kim.minji: your phone answered / 연결되었습니다 (whisper)"}
        originates = [a for a in r.peer.actions if a.get("Action") == "Originate"]
        assert [(a["Channel"], a["Context"], a["Exten"], a["Async"]) for a in originates] == [
            ("PJSIP/super9001", "dasan-supervise", "whisper", "true")]

        r.peer.originate_results.append("Failure")  # the supervisor's phone rang out
        with pytest.raises(AgentCommandError) as refused:
            await r.bridge.control.run(command | {"mode": "listen"})
        assert str(refused.value) == "your phone did not answer (Reason 0) / 전화를 받지 않았습니다"

        with pytest.raises(AgentCommandError, match=r"lee\.junho is not on a call"):
            await r.bridge.control.run(command | {"agent": "lee.junho"})
        assert len([a for a in r.peer.actions if a.get("Action") == "Originate"]) == 2


async def test_every_action_of_a_job_runs_its_own_command(settings: Settings, sqlite_url: str) -> None:
    """run() dispatches a job's action by name (and a job without one is refused naming it)."""
    import pytest

    from ivr.ami.agents import AgentCommandError

    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        control = r.bridge.control
        done = [(await control.run({"action": action, "username": "nguyen.thu", "reason": "break"})).action
                for action in ("login", "pause", "unpause")]
        assert done == ["login", "pause", "unpause"]
        assert r.peer.members and all(m["Paused"] == "0" for m in r.peer.members.values())
        await control.run({"action": "pause", "username": "nguyen.thu", "reason": "break"})
        # One membership went missing behind our back (Asterisk answers "Not there"): logging
        # out still ends the others and succeeds.
        queues = sorted(q for q, _ in r.peer.members)
        r.peer.members.pop(next(iter(r.peer.members)))
        result = await control.run({"action": "logout", "username": "nguyen.thu"})
        assert result.as_dict() == {"username": "nguyen.thu", "action": "logout", "queues": queues,
                                    "message": "logged out / 로그아웃했습니다"}
        assert r.peer.members == {}
        state = await _state(r, "nguyen.thu")
        assert (state.logged_in, state.paused, state.reason) == (False, False, None)
        for job, error in (({}, "unknown action '' (login|logout|pause|unpause|supervise)"),
                           ({"action": "login"}, "unknown agent '' / 없는 상담사입니다: ")):
            with pytest.raises(AgentCommandError) as refused:
                await control.run(job)
            assert str(refused.value) == error


async def test_a_command_asterisk_refuses_says_which_action_and_why(settings: Settings, sqlite_url: str) -> None:
    import pytest

    from ivr.ami.agents import AgentCommandError

    async with rig(settings, sqlite_url, MemoryBus()) as r:  # not logged in: no member to pause
        with pytest.raises(AgentCommandError) as refused:
            await r.bridge.control.run({"action": "unpause", "username": "nguyen.thu"})
        assert str(refused.value) == "QueuePause: Interface not found"
