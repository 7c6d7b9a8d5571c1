"""Agent log-in/out, pause and un-pause through AMI, with the state kept in the database.

Logging in adds the agent's PJSIP endpoint to the queue of every skill in ``agents.yaml``
with penalty ``5 - proficiency``. The wish (logged in? paused, why?) is stored in
``ami_agent_states`` so that after a restart of Asterisk (or an ``app_queue`` reload that
dropped a queue and its dynamic members, see ``restore``) the bridge puts it back.

Checked in app_queue.c (``reload_single_queue`` / ``mark_member_dead``): a member reload only
deletes static members; dynamic members (QueueAdd) survive ``queue reload``, but a queue that
disappears from queues.conf is destroyed with its members, so a re-added queue comes back
empty. Hence ``restore`` after every ``Reload`` event and every (re)connect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from ivr.ami.connection import AmiConnection, AmiError, ok
from ivr.ami.ingest import extension_of
from ivr.ami.models import AgentState
from ivr.ami.wire import UnsafeAmiValue, ami_value
from ivr.db import Database
from ivr.db.models import Agent, AgentSkill, Skill
from ivr.queues import AgentDef, QueueConfig

log = logging.getLogger("dasan.ami.agents")


class AgentCommandError(Exception):
    """A command that cannot run (unknown agent, Asterisk refused, not connected)."""


def _one_line(reason: str | None) -> str | None:
    """A stored reason as one line: rows written before reasons were checked must not stop a
    restore (the AMI wire refuses line breaks; new reasons are refused when asked for)."""
    return " ".join(reason.replace("\x00", " ").split()) if reason else reason


async def sync_agents(db: Database, qconf: QueueConfig) -> None:
    """Copy agents.yaml into agents / skills / agent_skills and make a state row per agent."""
    async with db.transaction() as session:
        skills = {s.name: s for s in (await session.execute(select(Skill))).scalars()}
        for name, queue in qconf.queues.items():
            if name not in skills:
                skill = Skill(name=name, description=queue.description[:200], language=queue.language)
                session.add(skill)
                skills[name] = skill
        await session.flush()
        agents = {a.username: a for a in (await session.execute(select(Agent))).scalars()}
        for adef in qconf.agents:
            agent = agents.get(adef.username)
            if agent is None:
                agent = Agent(username=adef.username, display_name=adef.name, extension=adef.extension)
                session.add(agent)
            else:
                agent.display_name, agent.extension, agent.active = adef.name, adef.extension, True
            await session.flush()
            await session.execute(delete(AgentSkill).where(AgentSkill.agent_id == agent.id))
            for skill_name, level in adef.skills.items():
                session.add(AgentSkill(agent_id=agent.id, skill_id=skills[skill_name].id, proficiency=level))
            state = await session.get(AgentState, adef.username)
            if state is None:
                session.add(AgentState(username=adef.username, extension=adef.extension, logged_in=False,
                                       paused=False, queues={}, device_status=0, in_call=False,
                                       state="logged_out", since=datetime.now(UTC)))
            else:
                state.extension = adef.extension


@dataclass
class CommandResult:
    username: str
    action: str
    queues: list[str]
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"username": self.username, "action": self.action, "queues": self.queues, "message": self.message}


class AgentControl:
    """Runs agent commands as AMI actions and records the wish in the database."""

    def __init__(self, conn: AmiConnection, db: Database, qconf: QueueConfig) -> None:
        self.conn, self.db, self.qconf = conn, db, qconf

    def agent(self, username: str) -> AgentDef:
        for a in self.qconf.agents:
            if a.username == username:
                return a
        raise AgentCommandError(f"unknown agent {username!r} / 없는 상담사입니다: {username}")

    async def _action(self, action: dict[str, Any], *accept: str) -> Any:
        try:
            response = await self.conn.send(action)
        except UnsafeAmiValue as exc:  # refused at the wire: nothing was sent
            raise AgentCommandError(str(exc)) from exc
        except (ConnectionError, TimeoutError) as exc:
            raise AgentCommandError(f"Asterisk not reachable / Asterisk 연결 안 됨: {exc}") from exc
        if not ok(response, *accept):
            raise AgentCommandError(f"{action['Action']}: {response.get('Message', 'error')}")
        return response

    async def _add(self, a: AgentDef, queue: str, paused: bool = False, reason: str | None = None) -> bool:
        """QueueAdd; False if Asterisk had the member already ("Already there": its pause,
        reason and penalty are left as they were)."""
        action = {"Action": "QueueAdd", "Queue": queue, "Interface": f"PJSIP/{a.extension}",
                  "Penalty": str(a.penalty(queue)), "MemberName": a.username,
                  "StateInterface": f"PJSIP/{a.extension}", "Paused": "true" if paused else "false"}
        if paused and reason:
            action["Reason"] = reason
        response = await self._action(action, "Already there")
        return response.get("Response") == "Success"

    async def _remember(self, username: str, **values: Any) -> None:
        async with self.db.transaction() as session:
            state = await session.get(AgentState, username)
            if state is None:
                a = self.agent(username)
                state = AgentState(username=username, extension=a.extension, queues={}, device_status=0,
                                   in_call=False, state="logged_out", since=datetime.now(UTC))
                session.add(state)
            for key, value in values.items():
                setattr(state, key, value)

    async def login(self, username: str) -> CommandResult:
        a = self.agent(username)
        queues = sorted(a.skills)
        for queue in queues:
            if not await self._add(a, queue):
                # A member already (a second login): it may be paused, and a login means ready
                # for calls, as the stored wish below says.
                await self._action({"Action": "QueuePause", "Queue": queue, "Interface": f"PJSIP/{a.extension}",
                                    "Paused": "false"})
        await self._remember(username, logged_in=True, paused=False, reason=None)
        return CommandResult(username, "login", queues, f"logged in to {', '.join(queues)} / 로그인했습니다")

    async def logout(self, username: str) -> CommandResult:
        a = self.agent(username)
        queues = sorted(a.skills)
        for queue in queues:
            await self._action({"Action": "QueueRemove", "Queue": queue, "Interface": f"PJSIP/{a.extension}"},
                               "Not there")
        await self._remember(username, logged_in=False, paused=False, reason=None)
        return CommandResult(username, "logout", queues, "logged out / 로그아웃했습니다")

    async def pause(self, username: str, reason: str | None = None) -> CommandResult:
        a = self.agent(username)
        action = {"Action": "QueuePause", "Interface": f"PJSIP/{a.extension}", "Paused": "true"}
        if reason:
            try:  # checked before anything is sent or remembered (the wire refuses it too)
                action["Reason"] = ami_value(reason, "reason")
            except UnsafeAmiValue as exc:
                raise AgentCommandError(str(exc)) from None
        await self._action(action)
        await self._remember(username, paused=True, reason=reason)
        return CommandResult(username, "pause", sorted(a.skills), f"paused ({reason or '-'}) / 일시 중지했습니다")

    async def unpause(self, username: str) -> CommandResult:
        a = self.agent(username)
        await self._action({"Action": "QueuePause", "Interface": f"PJSIP/{a.extension}", "Paused": "false"})
        await self._remember(username, paused=False, reason=None)
        return CommandResult(username, "unpause", sorted(a.skills), "available again / 다시 상담 가능합니다")

    async def run(self, command: dict[str, Any]) -> CommandResult:
        """One ``agent.commands`` job: ``{"action", "username", "reason"?}``."""
        action = str(command.get("action", ""))
        username = str(command.get("username", ""))
        if action == "login":
            return await self.login(username)
        if action == "logout":
            return await self.logout(username)
        if action == "pause":
            return await self.pause(username, command.get("reason"))
        if action == "unpause":
            return await self.unpause(username)
        if action == "supervise":
            return await self.supervise(command)
        raise AgentCommandError(f"unknown action {action!r} (login|logout|pause|unpause|supervise)")

    async def supervise(self, command: dict[str, Any]) -> CommandResult:
        """Ring the supervisor's phone into ChanSpy on the agent's call (ivr.ami.supervise)."""
        from ivr.ami.supervise import RING_SECONDS, SuperviseError, originate_action

        try:
            action = await originate_action(self.db, self.qconf, command)
        except SuperviseError as exc:
            raise AgentCommandError(str(exc)) from None
        mode, agent = action["Exten"], str(command.get("agent"))
        try:  # Async: the reply ends with OriginateResponse once the phone answered or gave up
            reply = await self.conn.send(action, timeout=RING_SECONDS + 10)
        except (ConnectionError, TimeoutError) as exc:
            raise AgentCommandError(f"Asterisk not reachable / Asterisk 연결 안 됨: {exc}") from exc
        messages = reply if isinstance(reply, list) else [reply]
        if messages[0].get("Response") != "Success":
            raise AgentCommandError(f"Originate: {messages[0].get('Message', 'error')}")
        final = messages[-1]
        if final.get("Event") != "OriginateResponse" or final.get("Response") != "Success":
            raise AgentCommandError(f"your phone did not answer (Reason {final.get('Reason', '?')})"
                                    " / 전화를 받지 않았습니다")
        return CommandResult(str(command.get("username")), "supervise", [],
                             f"{mode} on {agent}: your phone answered / 연결되었습니다 ({mode})")

    async def restore(self) -> list[str]:
        """Re-add the members Asterisk lost and re-apply pauses; returns what it changed."""
        members = await self.conn.send_list({"Action": "QueueStatus"}, timeout=30)
        present: dict[str, dict[str, dict[str, str]]] = {}
        for m in members:
            if m.get("Event") == "QueueMember":
                ext = extension_of(m.get("StateInterface") or m.get("Location") or "")
                present.setdefault(ext, {})[m.get("Queue", "")] = m
        async with self.db.session() as session:
            wishes = list((await session.execute(select(AgentState).where(AgentState.logged_in.is_(True)))).scalars())
        done: list[str] = []
        for wish in wishes:
            try:
                a = self.agent(wish.username)
            except AgentCommandError:
                continue
            have = present.get(a.extension, {})
            for queue in sorted(a.skills):
                if queue not in self.qconf.queues:
                    continue
                member = have.get(queue)
                try:
                    if member is None:
                        await self._add(a, queue, paused=wish.paused, reason=_one_line(wish.reason))
                        done.append(f"{a.username}: re-added to {queue}")
                    elif (member.get("Paused") == "1") != wish.paused:
                        action = {"Action": "QueuePause", "Queue": queue, "Interface": f"PJSIP/{a.extension}",
                                  "Paused": "true" if wish.paused else "false"}
                        if wish.paused and wish.reason:
                            action["Reason"] = _one_line(wish.reason) or ""
                        await self._action(action)
                        done.append(f"{a.username}: pause={wish.paused} in {queue}")
                except (AgentCommandError, AmiError) as exc:
                    log.warning("restoring %s in %s failed: %s", a.username, queue, exc)
        if done:
            log.info("agent membership restored: %s", "; ".join(done))
        return done
