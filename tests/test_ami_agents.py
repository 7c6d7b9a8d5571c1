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


def _sent(r, action: str, start: int = 0) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The actions of that name the bridge sent to Asterisk (from ``start`` on), without ActionID."""
    return [{k: v for k, v in a.items() if k != "ActionID"} for a in r.peer.actions[start:]
            if a.get("Action") == action]


async def test_agents_yaml_edits_reach_the_database_at_the_next_start(settings: Settings, sqlite_url: str) -> None:
    """sync_agents: skills from queues.yaml (description cut to its column, language), and an
    agent edited in agents.yaml (name, extension, skills) updated in place, active again, its
    state row following the new extension; the next login adds the new phone to the new queues."""
    from ivr.db.models import Skill
    from ivr.queues import load_queues

    queues_yaml = settings.queues_dir / "queues.yaml"
    long = "English line, " + "for every caller who prefers English; " * 8
    queues_yaml.write_text(queues_yaml.read_text(encoding="utf-8").replace(
        "description: English line", f"description: {long}"), encoding="utf-8")
    qconf = load_queues(settings.queues_dir)
    assert len(qconf.queues["en"].description) > 200
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        async with r.ctx.db.session() as s:
            skills = {k.name: (k.description, k.language) for k in (await s.execute(select(Skill))).scalars()}
            kim = (await s.execute(select(Agent).where(Agent.username == "kim.minji"))).scalar_one()
            agents_before = len((await s.execute(select(Agent))).scalars().all())
        assert skills == {name: (q.description[:200], q.language) for name, q in qconf.queues.items()}
        async with r.ctx.db.session() as s:  # everyone starts logged out, on the wallboard too
            states = {a.username: (a.extension, a.logged_in, a.paused, a.reason, a.queues, a.device_status, a.in_call,
                                   a.state) for a in (await s.execute(select(AgentState))).scalars()}
        assert states == {a.username: (a.extension, False, False, None, {}, 0, False, "logged_out")
                          for a in qconf.agents}
        assert (kim.display_name, kim.extension, kim.active) == ("김민지", "agent1001", True)
        async with r.ctx.db.transaction() as s:  # taken off the roster by an admin meanwhile
            (await s.execute(select(Agent).where(Agent.username == "kim.minji"))).scalar_one().active = False

        agents_yaml = settings.queues_dir / "agents.yaml"
        agents_yaml.write_text(agents_yaml.read_text(encoding="utf-8").replace(
            "    name: 김민지\n    extension: agent1001\n    skills: {general-ko: 5, general-wide: 5, en: 3}",
            "    name: 김민지 팀장\n    extension: agent2001\n    skills: {general-ko: 2, zh: 4}"), encoding="utf-8")
        await r.restart_bridge()
        async with r.ctx.db.session() as s:
            kim = (await s.execute(select(Agent).where(Agent.username == "kim.minji"))).scalar_one()
            rows = (await s.execute(select(Skill.name, AgentSkill.proficiency).join(
                AgentSkill, AgentSkill.skill_id == Skill.id).where(AgentSkill.agent_id == kim.id))).all()
            assert len((await s.execute(select(Agent))).scalars().all()) == agents_before
            assert len((await s.execute(select(Skill))).scalars().all()) == len(skills)
        assert (kim.display_name, kim.extension, kim.active) == ("김민지 팀장", "agent2001", True)
        assert dict(rows) == {"general-ko": 2, "zh": 4}
        assert (await _state(r, "kim.minji")).extension == "agent2001"

        r.peer.queues |= {"zh"}
        before = len(r.peer.actions)
        await r.bridge.control.login("kim.minji")
        assert _sent(r, "QueueAdd", before) == [
            {"Action": "QueueAdd", "Queue": q, "Interface": "PJSIP/agent2001", "Penalty": p, "MemberName": "kim.minji",
             "StateInterface": "PJSIP/agent2001", "Paused": "false"} for q, p in (("general-ko", "3"), ("zh", "1"))]


async def test_each_command_sends_exactly_its_actions_and_says_what_it_did(settings: Settings,
                                                                          sqlite_url: str) -> None:
    """What Asterisk receives for each command (and nothing it does not need), what the agent
    is told, and the wish kept in the database; a second login meets "Already there" and
    succeeds without a second membership."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        control = r.bridge.control
        result = await control.run({"action": "login", "username": "nguyen.thu"})
        assert result.as_dict() == {"username": "nguyen.thu", "action": "login", "queues": ["general-wide", "vi"],
                                    "message": "logged in to general-wide, vi / 로그인했습니다"}
        assert _sent(r, "QueuePause") == []  # new members, added unpaused: nothing to un-pause
        again = await control.run({"action": "login", "username": "nguyen.thu"})
        assert again.message == result.message
        assert _sent(r, "QueuePause") == [  # members already: made available
            {"Action": "QueuePause", "Queue": q, "Interface": "PJSIP/agent1004", "Paused": "false"}
            for q in ("general-wide", "vi")]
        adds = _sent(r, "QueueAdd")
        assert adds[:2] == adds[2:] == [
            {"Action": "QueueAdd", "Queue": q, "Interface": "PJSIP/agent1004", "Penalty": p, "MemberName": "nguyen.thu",
             "StateInterface": "PJSIP/agent1004", "Paused": "false"} for q, p in (("general-wide", "3"), ("vi", "0"))]
        assert sorted(r.peer.members) == [("general-wide", "PJSIP/agent1004"), ("vi", "PJSIP/agent1004")]

        before = len(r.peer.actions)
        paused = await control.run({"action": "pause", "username": "nguyen.thu"})
        assert paused.as_dict() == {"username": "nguyen.thu", "action": "pause", "queues": ["general-wide", "vi"],
                                    "message": "paused (-) / 일시 중지했습니다"}
        assert _sent(r, "QueuePause", before) == [
            {"Action": "QueuePause", "Interface": "PJSIP/agent1004", "Paused": "true"}]
        state = await _state(r, "nguyen.thu")
        assert (state.logged_in, state.paused, state.reason) == (True, True, None)

        before = len(r.peer.actions)
        paused = await control.run({"action": "pause", "username": "nguyen.thu", "reason": "교육 training"})
        assert paused.message == "paused (교육 training) / 일시 중지했습니다"
        assert _sent(r, "QueuePause", before) == [
            {"Action": "QueuePause", "Interface": "PJSIP/agent1004", "Paused": "true", "Reason": "교육 training"}]
        assert (await _state(r, "nguyen.thu")).reason == "교육 training"

        before = len(r.peer.actions)
        back = await control.run({"action": "unpause", "username": "nguyen.thu", "reason": "ignored"})
        assert back.as_dict() == {"username": "nguyen.thu", "action": "unpause", "queues": ["general-wide", "vi"],
                                  "message": "available again / 다시 상담 가능합니다"}
        assert _sent(r, "QueuePause", before) == [
            {"Action": "QueuePause", "Interface": "PJSIP/agent1004", "Paused": "false"}]
        state = await _state(r, "nguyen.thu")
        assert (state.logged_in, state.paused, state.reason) == (True, False, None)

        before = len(r.peer.actions)
        await control.run({"action": "logout", "username": "nguyen.thu"})
        assert _sent(r, "QueueRemove", before) == [
            {"Action": "QueueRemove", "Queue": q, "Interface": "PJSIP/agent1004"} for q in ("general-wide", "vi")]
        assert r.peer.members == {}


async def test_a_command_for_an_agent_without_a_state_row_makes_one(settings: Settings, sqlite_url: str) -> None:
    """An agent added to agents.yaml after the bridge started has no ami_agent_states row:
    the first command writes one with the agent's phone, and the wallboard then shows them."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        async with r.ctx.db.transaction() as s:
            row = await s.get(AgentState, "nguyen.thu")
            assert row is not None
            await s.delete(row)
        await r.bridge.control.login("nguyen.thu")
        await r.settle()
        state = await _state(r, "nguyen.thu")
        assert (state.extension, state.logged_in, state.paused, state.reason, state.state, state.queues) == (
            "agent1004", True, False, None, "available", {"general-wide": 3, "vi": 0})
        metrics = await current_metrics(r.ctx)
        assert metrics["queues"]["vi"]["agents"]["available"] == 1


async def test_without_asterisk_commands_fail_saying_so_and_change_nothing(settings: Settings,
                                                                          sqlite_url: str) -> None:
    """Asterisk away: every command, supervise included, fails with "not reachable" (the
    bridge retries those) and the agent's wish in the database is left as it was."""
    import pytest

    from ivr.ami.agents import AgentCommandError
    from ivr.ami.models import LiveCall

    async with rig(settings, sqlite_url, MemoryBus()) as r:
        async with r.ctx.db.transaction() as session:
            session.add(LiveCall(linkedid="1700000001.9", contact_id=None, queue="general-ko", state="connected",
                                 agent="agent1001"))
        await r.peer.close()
        await wait_for(lambda: not r.bridge.conn.logged_in.is_set())
        address = r.bridge.conn.address
        for command in ({"action": "login", "username": "lee.junho"},
                        {"action": "supervise", "username": "lee.junho", "supervisor": "lee.junho",
                         "agent": "kim.minji", "mode": "listen"}):
            with pytest.raises(AgentCommandError) as refused:
                await r.bridge.control.run(command)
            assert str(refused.value) == f"Asterisk not reachable / Asterisk 연결 안 됨: AMI {address} is not connected"
        state = await _state(r, "lee.junho")
        assert (state.logged_in, state.paused) == (False, False)


async def test_a_refused_originate_is_reported_with_asterisks_message(settings: Settings, sqlite_url: str) -> None:
    """The manager user lacks the originate class: Asterisk answers "Permission denied" and
    no phone rings; the supervisor is told the action and Asterisk's words."""
    import pytest

    from ivr.ami.agents import AgentCommandError
    from ivr.ami.models import LiveCall

    async with rig(settings, sqlite_url, MemoryBus()) as r:
        async with r.ctx.db.transaction() as session:
            session.add(LiveCall(linkedid="1700000001.7", contact_id=None, queue="general-ko", state="connected",
                                 agent="agent1001"))
        r.peer.denied.add("originate")
        with pytest.raises(AgentCommandError) as refused:
            await r.bridge.control.run({"action": "supervise", "username": "lee.junho", "supervisor": "lee.junho",
                                        "agent": "kim.minji", "mode": "barge"})
        assert str(refused.value) == "Originate: Permission denied"
        assert len(_sent(r, "Originate")) == 1


async def test_restore_skips_what_it_cannot_do_and_says_what_it_did(settings: Settings, sqlite_url: str,
                                                                    caplog: object) -> None:
    """A wish of an agent no longer in agents.yaml is skipped; a queue Asterisk refuses is
    logged and the agent's other queues are still re-added, paused with the stored reason; a
    member Asterisk reports by its state interface (a Local channel with the agent's phone as
    state) counts as present; the log says what was changed, and nothing when nothing was."""
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.INFO, logger="dasan.ami.agents")
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"general-wide", "en"}  # zh is not loaded in Asterisk
        async with r.ctx.db.transaction() as s:
            # the unknown agent's wish first in the table, so that the others come after it
            for username in ("kim.minji", "lee.junho"):
                await s.delete(await s.get(AgentState, username))
            await s.flush()
            s.add(AgentState(username="gone.agent", extension="agent1999", logged_in=True, paused=False, queues={},
                             device_status=0, in_call=False, state="logged_out"))
            await s.flush()
            for username, ext, paused, reason in (("kim.minji", "agent1001", False, None),
                                                  ("lee.junho", "agent1002", True, "training")):
                s.add(AgentState(username=username, extension=ext, logged_in=True, paused=paused, reason=reason,
                                 queues={}, device_status=0, in_call=False, state="logged_out"))
        # kim's general-ko membership: a Local channel whose state is her phone.
        r.peer.members[("general-ko", "Local/1001@dasan-agents/n")] = {
            "Queue": "general-ko", "MemberName": "kim.minji", "Interface": "Local/1001@dasan-agents/n",
            "StateInterface": "PJSIP/agent1001", "Membership": "dynamic", "Penalty": "0", "CallsTaken": "0",
            "LastCall": "0", "LastPause": "0", "LoginTime": "0", "InCall": "0", "Status": "1", "Paused": "0",
            "PausedReason": "", "Ringinuse": "1", "Wrapuptime": "0"}
        caplog.clear()
        before = len(r.peer.actions)
        done = await r.bridge.control.restore()
        assert done == ["kim.minji: re-added to en", "kim.minji: re-added to general-wide",
                        "lee.junho: re-added to general-ko", "lee.junho: re-added to general-wide"]
        adds = _sent(r, "QueueAdd", before)
        assert [(a["Queue"], a["Interface"], a["Paused"], a.get("Reason")) for a in adds] == [
            ("en", "PJSIP/agent1001", "false", None), ("general-wide", "PJSIP/agent1001", "false", None),
            ("general-ko", "PJSIP/agent1002", "true", "training"), ("general-wide", "PJSIP/agent1002", "true", "training"),
            ("zh", "PJSIP/agent1002", "true", "training")]
        logged = [(rec.levelname, rec.getMessage()) for rec in caplog.records if rec.name == "dasan.ami.agents"]
        assert logged == [
            ("WARNING", "restoring lee.junho in zh failed: QueueAdd: Unable to add interface to queue: No such queue"),
            ("INFO", "agent membership restored: " + "; ".join(done))]

        caplog.clear()
        before = len(r.peer.actions)
        assert await r.bridge.control.restore() == []  # all there now (zh still refused, and logged)
        assert [a["Queue"] for a in _sent(r, "QueueAdd", before)] == ["zh"]
        assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.INFO
                and rec.name == "dasan.ami.agents"] == [
            "restoring lee.junho in zh failed: QueueAdd: Unable to add interface to queue: No such queue"]


async def test_restoring_a_pause_whose_stored_reason_is_only_blanks_sends_an_empty_reason(
        settings: Settings, sqlite_url: str) -> None:
    """A reason stored before reasons were checked that is nothing but line breaks: the pause
    is put back with an empty reason (never the line breaks)."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"general-wide", "vi"}
        await r.bridge.control.login("nguyen.thu")
        async with r.ctx.db.transaction() as s:
            state = await s.get(AgentState, "nguyen.thu")
            assert state is not None
            state.paused, state.reason = True, "\r\n\x00"
        before = len(r.peer.actions)
        assert await r.bridge.control.restore() == ["nguyen.thu: pause=True in general-wide",
                                                    "nguyen.thu: pause=True in vi"]
        assert _sent(r, "QueuePause", before) == [
            {"Action": "QueuePause", "Queue": q, "Interface": "PJSIP/agent1004", "Paused": "true", "Reason": ""}
            for q in ("general-wide", "vi")]


async def test_the_supervisors_phone_may_ring_longer_than_an_ordinary_action_waits(settings: Settings,
                                                                                  sqlite_url: str) -> None:
    """The Originate's reply ends only when the supervisor's phone answers (up to RING_SECONDS):
    the bridge waits for it however short its timeout for ordinary actions is."""
    from ivr.ami.models import LiveCall
    from tests.support.ami_peer import _originate_response

    async with rig(settings, sqlite_url, MemoryBus()) as r:
        async with r.ctx.db.transaction() as session:
            session.add(LiveCall(linkedid="1700000001.8", contact_id=None, queue="general-ko", state="connected",
                                 agent="agent1001"))
        r.bridge.conn.action_timeout = 0.05
        r.peer.originate_results.append("HOLD")  # the phone rings on
        supervising = asyncio.create_task(r.bridge.control.run(
            {"action": "supervise", "username": "lee.junho", "supervisor": "lee.junho", "agent": "kim.minji",
             "mode": "listen"}))
        await wait_for(lambda: r.peer.held)
        await asyncio.sleep(0.5)  # ten ordinary timeouts: a wait that short would have given up
        assert not supervising.done()
        held = r.peer.held[0]
        await r.peer.play([_originate_response(held["ActionID"], held, "Success", held["Channel"], 4)])
        result = await supervising
        assert result.message == "listen on kim.minji: your phone answered / 연결되었습니다 (listen)"


async def test_a_pause_reason_that_would_break_the_line_is_refused_naming_the_field(settings: Settings,
                                                                                   sqlite_url: str) -> None:
    """The console shows the agent which field was refused; nothing reaches Asterisk and the
    stored wish is unchanged."""
    import pytest

    from ivr.ami.agents import AgentCommandError

    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await r.bridge.control.login("nguyen.thu")
        before = len(r.peer.actions)
        with pytest.raises(AgentCommandError) as refused:
            await r.bridge.control.run({"action": "pause", "username": "nguyen.thu", "reason": "점심\nlunch"})
        assert str(refused.value) == "reason: line breaks and NUL are not allowed / 줄바꿈과 NUL 문자는 쓸 수 없습니다"
        assert r.peer.actions[before:] == []
        state = await _state(r, "nguyen.thu")
        assert (state.paused, state.reason) == (False, None)


async def test_logging_in_again_while_paused_makes_the_agent_available_in_asterisk_too(settings: Settings,
                                                                                       sqlite_url: str) -> None:
    """A login (the console's button pressed again, a second tab) means "ready for calls":
    Asterisk answers "Already there" to the QueueAdd of a paused member and keeps it paused, so
    the bridge un-pauses it; the wallboard and the stored wish then agree with Asterisk."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        control = r.bridge.control
        await control.login("nguyen.thu")
        await control.pause("nguyen.thu", "break")
        await r.settle()
        assert (await _state(r, "nguyen.thu")).state == "paused"
        before = len(r.peer.actions)
        await control.login("nguyen.thu")
        await r.settle()
        assert [(a["Queue"], a["Paused"]) for a in _sent(r, "QueuePause", before)] == [
            ("general-wide", "false"), ("vi", "false")]
        assert all(m["Paused"] == "0" for m in r.peer.members.values()) and len(r.peer.members) == 2
        state = await _state(r, "nguyen.thu")
        assert (state.state, state.logged_in, state.paused, state.reason) == ("available", True, False, None)


async def test_logging_out_an_agent_asterisk_does_not_have_records_the_wish(settings: Settings,
                                                                           sqlite_url: str) -> None:
    """Every QueueRemove answered "Not there" (Asterisk lost the members, so no event follows):
    the stored wish still says logged out, so no later restore puts the agent back; an agent
    without a state row gets one, logged out."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide", "zh"}
        await r.bridge.control.login("lee.junho")
        await r.bridge.control.pause("lee.junho", "training")
        await r.settle()
        r.peer.members.clear()  # gone without a QueueMemberRemoved
        async with r.ctx.db.transaction() as s:
            row = await s.get(AgentState, "nguyen.thu")
            assert row is not None
            await s.delete(row)
        for username in ("lee.junho", "nguyen.thu"):
            result = await r.bridge.control.logout(username)
            assert result.message == "logged out / 로그아웃했습니다"
        assert (await _state(r, "lee.junho")).logged_in is False
        lee = await _state(r, "lee.junho")
        assert (lee.logged_in, lee.paused, lee.reason) == (False, False, None)
        nguyen = await _state(r, "nguyen.thu")
        assert (nguyen.extension, nguyen.logged_in, nguyen.paused, nguyen.reason, nguyen.queues, nguyen.device_status,
                nguyen.in_call, nguyen.state) == ("agent1004", False, False, None, {}, 0, False, "logged_out")
        before = len(r.peer.actions)
        assert await r.bridge.control.restore() == []
        assert _sent(r, "QueueAdd", before) == []


async def test_a_member_restored_unpaused_gets_no_leftover_reason(settings: Settings, sqlite_url: str) -> None:
    """A stored wish "logged in, not paused" that still carries an old reason (a row edited by
    hand, an older release): the member comes back unpaused and without a pause reason."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        async with r.ctx.db.transaction() as s:
            state = await s.get(AgentState, "nguyen.thu")
            assert state is not None
            state.logged_in, state.paused, state.reason = True, False, "old break"
        assert await r.bridge.control.restore() == ["nguyen.thu: re-added to general-wide", "nguyen.thu: re-added to vi"]
        assert [(a["Queue"], a["Paused"], a.get("Reason")) for a in _sent(r, "QueueAdd")] == [
            ("general-wide", "false", None), ("vi", "false", None)]
        assert all(m["Paused"] == "0" and m["PausedReason"] == "" for m in r.peer.members.values())
