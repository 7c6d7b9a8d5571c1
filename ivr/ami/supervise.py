"""Supervisor listen / whisper / barge: an ``Originate`` that rings the supervisor's phone and,
once answered, runs ChanSpy on the agent's channel (context ``dasan-supervise`` of the rendered
dialplan, ivr/asterisk/dialplan/extensions.conf.j2).

The supervisor's phone is the PJSIP endpoint of their username in agents.yaml (skills may be
empty); if that endpoint is a console softphone (``webrtc.softphone_agents``) the browser rings.
ChanSpy runs with option ``d`` (apps/app_chanspy.c, Asterisk 22): during the session the
supervisor presses 4 (listen), 5 (whisper to the agent) or 6 (barge: both parties hear them).

Originate into a dialplan context needs only the ``originate`` privilege (manager.c,
``action_originate``: ``system`` is needed only to run an application such as System).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.contracts import Var
from ivr.db import Database
from ivr.queues import AgentDef, QueueConfig

MODES = ("listen", "whisper", "barge")
CONTEXT = "dasan-supervise"
# ChanSpy's options per starting mode: q no beep or name, E end with the spied-on channel,
# d 4/5/6 switch listen/whisper/barge while spying, w whisper to the agent, B barge on both.
CHANSPY_OPTIONS = {"listen": "qEd", "whisper": "qEdw", "barge": "qEdB"}
RING_SECONDS = 30  # how long the supervisor's phone rings before Asterisk gives up


class SuperviseError(Exception):
    """A supervise request that cannot run (no phone, the agent not on a call, bad mode)."""


def _endpoint(qconf: QueueConfig, username: str, whose: str) -> AgentDef:
    for a in qconf.agents:
        if a.username == username:
            return a
    raise SuperviseError(
        f"{whose} {username!r} has no phone in agents.yaml / agents.yaml에 {username}의 전화가 없습니다")


async def live_call_of(db: Database, extension: str) -> LiveCall | None:
    """The call the agent's endpoint is talking on now (the AMI bridge's live state keeps the
    answering member's extension)."""
    async with db.session() as session:
        return (await session.execute(select(LiveCall).where(
            LiveCall.agent == extension, LiveCall.state == "connected").limit(1))).scalar_one_or_none()


async def originate_action(db: Database, qconf: QueueConfig, command: dict[str, Any]) -> dict[str, Any]:
    """The AMI ``Originate`` for ``{"supervisor", "agent", "mode"}``, checked against agents.yaml
    and the live calls (endpoint names are ``[A-Za-z0-9_-]`` by AgentDef: nothing can reach
    ChanSpy's option argument)."""
    mode = str(command.get("mode", ""))
    if mode not in MODES:
        raise SuperviseError(f"mode: one of {', '.join(MODES)}")
    supervisor = _endpoint(qconf, str(command.get("supervisor", "")), "supervisor")
    agent = _endpoint(qconf, str(command.get("agent", "")), "agent")
    if supervisor.username == agent.username:
        raise SuperviseError("cannot supervise your own call / 자기 통화는 감청할 수 없습니다")
    if await live_call_of(db, agent.extension) is None:
        raise SuperviseError(f"{agent.username} is not on a call / {agent.name} 상담사는 통화 중이 아닙니다")
    return {
        "Action": "Originate",
        "Channel": f"PJSIP/{supervisor.extension}",
        "Context": CONTEXT,
        "Exten": mode,
        "Priority": "1",
        "Timeout": str(RING_SECONDS * 1000),
        "CallerID": f"{mode} <{agent.extension}>",
        # ChanSpy's prefix: the trailing '-' keeps agent100 from matching agent1001's channels.
        "Variable": [f"{Var.SPY_TARGET}=PJSIP/{agent.extension}-", f"{Var.SPY_SUPERVISOR}={supervisor.username}"],
        "Async": "true",
    }
