"""Supervisor listen / whisper / barge: an ``Originate`` that rings the supervisor's phone and,
once answered, runs ChanSpy on the agent's channel (context ``dasan-supervise`` of the rendered
dialplan, ivr/asterisk/dialplan/extensions.conf.j2).

The supervisor's phone is the PJSIP endpoint of their username in agents.yaml (skills may be
empty); if that endpoint is a console softphone (``webrtc.softphone_agents``) the browser rings.
ChanSpy runs with option ``d`` (apps/app_chanspy.c, Asterisk 22): during the session the
supervisor presses 4 (listen), 5 (whisper to the agent) or 6 (barge: both parties hear them).

Originate into a dialplan context needs only the ``originate`` privilege (manager.c,
``action_originate``: ``system`` is needed only to run an application such as System).

Mode switches are audited like the start (``SpyModes``): Asterisk 22 reports each key the
supervisor's phone sends as a ``DTMFEnd`` manager event (main/manager_channels.c
``channel_dtmf_end_cb``, read class ``dtmf``): the supervisor channel's snapshot (Channel,
Context ``dasan-supervise``, Exten = the starting mode, CallerIDNum = the agent's extension from
the Originate's CallerID, Uniqueid, ...) plus Digit, DurationMs and Direction (Received/Sent,
main/channel.c ``send_dtmf_end_event``). manager.conf lets only those through
(``other_context_regex``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.contracts import Var
from ivr.db import Database
from ivr.db.models import AuditLog
from ivr.queues import AgentDef, QueueConfig

MODES = ("listen", "whisper", "barge")
CONTEXT = "dasan-supervise"
# ChanSpy's options per starting mode: q no beep or name, E end with the spied-on channel,
# d 4/5/6 switch listen/whisper/barge while spying, w whisper to the agent, B barge on both.
CHANSPY_OPTIONS = {"listen": "qEd", "whisper": "qEdw", "barge": "qEdB"}
RING_SECONDS = 30  # how long the supervisor's phone rings before Asterisk gives up
# ChanSpy's d option (apps/app_chanspy.c change_spy_mode): 4 clears whisper and barge, 5 sets
# whisper, 6 sets barge; other digits do nothing with d.
DIGIT_MODES = {"4": "listen", "5": "whisper", "6": "barge"}
DTMF_END = "DTMFEnd"  # the manager event of a key's end (main/manager_channels.c)
AUDIT_ACTION = "supervise"  # the audit row of a start (ivr.console.supervise) and of each switch

log = logging.getLogger("dasan.ami.supervise")


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


def other_context_regex(context: str = CONTEXT) -> str:
    """A POSIX extended regex (manager.conf eventfilter, regcomp REG_EXTENDED) that matches any
    non-empty value except exactly ``context``: ERE has no negative look-ahead, so it is spelled
    out (a first character that differs, or the same first k characters then a different one or
    the end, or ``context`` followed by more)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", context):
        raise ValueError(f"context {context!r}: letters, digits, _ and - only")
    parts = [f"[^{context[0]}]"]
    parts += [f"{context[:k]}([^{context[k]}]|$)" for k in range(1, len(context))]
    parts.append(f"{context}.")
    return "^(" + "|".join(parts) + ")"


@dataclass(frozen=True)
class ModeSwitch:
    """A supervisor's key that changed the session's mode."""

    supervisor: str  # username (agents.yaml), else the channel's endpoint
    agent: str  # username, else the extension the Originate put in CallerIDNum
    extension: str  # the agent's endpoint
    mode: str
    previous: str
    uniqueid: str  # the supervisor's channel


class SpyModes:
    """Each session's mode, from the supervisor's keys (``DTMFEnd`` Received on a channel in
    ``dasan-supervise``); ``observe`` returns the switches. A session starts in its extension's
    mode; pressing the key of the mode it is in is not a switch. Forgotten at the channel's
    Hangup (after a bridge restart a session starts again from its extension's mode)."""

    MAX_SESSIONS = 1000

    def __init__(self, agents: list[AgentDef]) -> None:
        self.by_extension = {a.extension: a for a in agents}
        self.modes: dict[str, str] = {}

    @staticmethod
    def wants(name: str, raw: str) -> bool:
        """Events to parse: a key in the supervise context (Hangup is parsed for the ingester)."""
        return name == DTMF_END and CONTEXT in raw

    def observe(self, items: list[Any]) -> list[ModeSwitch]:
        switches = []
        for e in items:
            if not isinstance(e, dict):
                continue
            name, uniqueid = e.get("Event"), e.get("Uniqueid", "")
            if name == "Hangup":
                self.modes.pop(uniqueid, None)
                continue
            if name != DTMF_END or e.get("Direction") != "Received" or e.get("Context") != CONTEXT:
                continue
            mode = DIGIT_MODES.get(e.get("Digit", ""))
            previous = self.modes.get(uniqueid) or e.get("Exten", "")
            if mode is None or mode == previous:
                continue
            if len(self.modes) >= self.MAX_SESSIONS:  # Hangups missed while disconnected
                self.modes.pop(next(iter(self.modes)))
            self.modes[uniqueid] = mode
            # PJSIP/<endpoint>-<sequence>: the supervisor's phone
            endpoint = e.get("Channel", "").split("/", 1)[-1].rsplit("-", 1)[0]
            extension = e.get("CallerIDNum", "")
            supervisor, agent = self.by_extension.get(endpoint), self.by_extension.get(extension)
            switches.append(ModeSwitch(supervisor.username if supervisor else endpoint,
                                       agent.username if agent else extension, extension, mode, previous, uniqueid))
        return switches


async def audit_switch(db: Database, switch: ModeSwitch) -> dict[str, Any]:
    """The switch's audit row, as the start's (who, whose call, when, which mode; the call and
    contact it is on now); returns the ``live.supervise`` message for the supervisor."""
    call = await live_call_of(db, switch.extension)
    linkedid, contact_id = (call.linkedid, call.contact_id) if call is not None else (None, None)
    async with db.transaction() as session:
        session.add(AuditLog(actor=switch.supervisor[:80], action=AUDIT_ACTION, target=f"agent:{switch.agent}"[:200],
                             data={"mode": switch.mode, "call": linkedid, "contact_id": contact_id,
                                   "from": switch.previous, "by": "keypad"}))
    log.info("supervise: %s switched %s -> %s on %s's call", switch.supervisor, switch.previous, switch.mode,
             switch.agent)
    return {"action": "supervise", "username": switch.supervisor, "supervisor": switch.supervisor,
            "agent": switch.agent, "mode": switch.mode, "from": switch.previous, "switched": True,
            "call": linkedid, "message": f"{switch.previous} -> {switch.mode}"}
