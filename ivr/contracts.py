"""The names the parts agree on: bus topics, job streams, Asterisk channel variables and the
dialplan's user events.

Named once here (as wazo-agid names its dialplan variables in one module); everything else in
``ivr`` uses these constants, never the string (tests/test_contracts.py fails on a new
literal). What each carries is in docs/contracts.md; ``contact_updated`` builds the one payload
many parts publish.
The values are ``StrEnum`` members, so they are the plain strings on the wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Topic(StrEnum):
    """Live pub/sub topics (a message to every subscriber that is listening)."""

    LIVE_METRICS = "live.metrics"
    LIVE_AGENTS = "live.agents"
    LIVE_AMI = "live.ami"
    LIVE_SUPERVISE = "live.supervise"
    AGENT_SCREENPOP = "agent.screenpop"
    CONTACT_UPDATED = "contact.updated"
    CHAT_QUEUE = "chat.queue"


CHAT_PREFIX = "chat."


def chat_topic(conversation_id: int) -> str:
    """The lines of one web chat, for its connected parties."""
    return f"{CHAT_PREFIX}{conversation_id}"


def agent_chat_topic(username: str) -> str:
    """The chats assigned to one agent."""
    return f"{CHAT_PREFIX}agent.{username}"


class Stream(StrEnum):
    """Job streams (consumer groups: each job to one worker, acked when done)."""

    RECORDINGS_FINISHED = "recordings.finished"
    SMS_OUTBOUND = "sms.outbound"
    MESSAGES_INBOUND = "messages.inbound"
    AGENT_COMMANDS = "agent.commands"
    ASTERISK_APPLY = "asterisk.apply"


class Var(StrEnum):
    """Channel variables between the dialplan and the FastAGI IVR or the AMI bridge (the
    dialplan template takes these names too: ``ivr.asterisk.dialplan_names``)."""

    QUEUE = "QUEUE"
    LANG = "LANG"
    TOPIC = "TOPIC"
    CONTACT_ID = "CONTACT_ID"
    IVR_RESULT = "IVR_RESULT"
    NIGHT_ROUTE = "NIGHT_ROUTE"
    SURVEY_SCORE = "SURVEY_SCORE"
    CALLBACK_QUEUE = "CALLBACK_QUEUE"
    # set by the AMI bridge's Originate for a supervisor's ChanSpy (ivr.ami.supervise)
    SPY_TARGET = "SPY_TARGET"
    SPY_SUPERVISOR = "SPY_SUPERVISOR"
    # set by the callback dialer's Originate (ivr.ami.callbacks): the request and the citizen
    # the call is for, on the call's channels (the dialplan leaves them alone)
    CALLBACK_ID = "CALLBACK_ID"
    CITIZEN_ID = "CITIZEN_ID"


class DialplanEvent(StrEnum):
    """The dialplan's ``UserEvent(<name>,...)`` to the AMI bridge (``ivr.ami.handlers``)."""

    FALLBACK = "DasanFallback"  # the IVR failed or decided nothing: the dialplan queued the caller
    SURVEY = "DasanSurvey"  # the survey digit, stored by the bridge if the IVR could not


class IvrResult(StrEnum):
    """The values of ``IVR_RESULT``."""

    QUEUE = "queue"
    HANGUP = "hangup"
    NIGHT = "night"


def contact_updated(contact_id: int, fields: list[str]) -> dict[str, Any]:
    """The ``contact.updated`` payload: which fields of which contact changed."""
    return {"contact_id": contact_id, "fields": fields}
