"""Queues, skills, agents and opening hours: data in ``queues/*.yaml`` that admins edit.

This is the one source of truth for skill routing: the IVR engine reads opening hours and
night routes from it, ``dasan asterisk render`` turns it into queues.conf / queuerules.conf /
pjsip.conf agents, and the AMI bridge logs agents in with the penalties derived from it.

Layout of the folder:
- ``queues.yaml``: ``defaults``, named ``schedules``, ``holidays`` and the ``queues``;
- ``agents.yaml``: the counsellors, their SIP extension and skill proficiencies (1-5).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivr import yamlfile

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAME = r"^[a-z][a-z0-9-]{1,39}$"
# Values written into Asterisk's files and dialplan are plain names: a ']' in a section name
# makes a template, '/' or '..' in a music class leaves its folder, '${' is evaluated.
CLASS_NAME = r"^[a-z0-9_-]{1,40}$"  # music-on-hold classes
LANGUAGE = r"^[a-z]{2,3}(?:_[A-Z]{2})?$"  # Asterisk sound languages (ko, en, pt_BR)
TIMEZONE = re.compile(r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(value: str) -> str:
    """Free text written into a configuration file (a comment, a caller-ID name): one line."""
    if _CONTROL.search(value):
        raise ValueError("line breaks and control characters are not allowed")
    return value


def time_zone(value: str) -> str:
    """An IANA time zone name that exists (it is written into the dialplan's [globals])."""
    if not TIMEZONE.fullmatch(value):
        raise ValueError(f"{value[:60]!r} is not a time zone name (e.g. Asia/Seoul)")
    try:
        ZoneInfo(value)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Seoul)") from None
    return value
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PenaltyRule(_Strict):
    """After ``after_seconds`` of waiting, agents up to ``max_penalty`` may take the call."""

    after_seconds: int = Field(ge=1)
    max_penalty: int = Field(ge=0, le=10)


class Overflow(_Strict):
    after_seconds: int = Field(ge=10)
    to: str


class NightRoute(_Strict):
    # callback: keep a callback request; sms: send a link by SMS; message: play and hang up;
    # voicemail: leave a message. ``queue``: send to another (open) queue instead.
    kind: Literal["callback", "sms", "message", "voicemail", "queue"] = "message"
    queue: str | None = None
    sms_text: dict[str, str] = Field(default_factory=dict)


class CallbackPolicy(_Strict):
    """How a queue's callbacks are dialled: attempts, the waits between them, ring time."""

    max_attempts: int = Field(3, ge=1, le=20)
    # seconds before the 2nd, 3rd... attempt (the last value repeats)
    retry_seconds: list[int] = Field(default_factory=lambda: [60, 300, 900], min_length=1)
    # seconds the Originate waits for a counsellor of the queue to take the call
    ring_seconds: int = Field(60, ge=5, le=3600)

    @field_validator("retry_seconds")
    @classmethod
    def _check_retry(cls, values: list[int]) -> list[int]:
        if any(v < 0 for v in values):
            raise ValueError("retry_seconds must not be negative")
        return values


class Queue(_Strict):
    name: str = ""
    description: str = ""
    language: str = Field("ko", pattern=LANGUAGE)
    skill: str | None = None  # defaults to the queue name
    _one_line = field_validator("description")(one_line)
    strategy: Literal["ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear", "wrandom"] | None = None
    timeout: int | None = Field(None, ge=1)  # seconds an agent's phone rings
    wrapup_seconds: int | None = Field(None, ge=0)
    max_wait_seconds: int | None = Field(None, ge=10)
    announce_position: bool | None = None
    announce_frequency: int | None = Field(None, ge=0)
    musicclass: str | None = Field(None, pattern=CLASS_NAME)
    hours: str = "always"  # a schedule name
    night_route: NightRoute = Field(default_factory=NightRoute)
    overflow: Overflow | None = None
    penalty_rules: list[PenaltyRule] = Field(default_factory=list)
    media: Literal["audio", "video"] = "audio"
    callback: CallbackPolicy | None = None  # defaults.callback when absent


class Defaults(_Strict):
    strategy: Literal["ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear", "wrandom"] = "rrmemory"
    timeout: int = Field(15, ge=1)
    wrapup_seconds: int = Field(10, ge=0)
    max_wait_seconds: int = Field(1800, ge=10)
    announce_position: bool = True
    announce_frequency: int = Field(60, ge=0)
    musicclass: str = Field("default", pattern=CLASS_NAME)
    service_level_seconds: int = Field(20, ge=1)
    callback: CallbackPolicy = Field(default_factory=CallbackPolicy)


class Schedule(_Strict):
    """Weekly opening hours: day -> list of 'HH:MM-HH:MM' (empty or absent: closed)."""

    always: bool = False
    week: dict[str, list[str]] = Field(default_factory=dict)
    closed_on_holidays: bool = True

    @field_validator("week")
    @classmethod
    def _check_week(cls, week: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, ranges in week.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r} (expected one of {', '.join(DAYS)})")
            for r in ranges:
                m = _RANGE.match(r)
                if not m or not (0 <= int(m[1]) <= 24 and 0 <= int(m[3]) <= 24 and int(m[2]) < 60 and int(m[4]) < 60):
                    raise ValueError(f"{day}: {r!r} is not a time range (expected 'HH:MM-HH:MM')")
                if (int(m[1]), int(m[2])) >= (int(m[3]), int(m[4])):
                    raise ValueError(f"{day}: {r!r} ends before it starts")
        return week

    def is_open(self, when: datetime, holidays: set[date] | frozenset[date]) -> bool:
        if self.always:
            return True
        if self.closed_on_holidays and when.date() in holidays:
            return False
        minute = when.hour * 60 + when.minute
        return any(start <= minute < end for start, end in self._minutes.get(when.weekday(), ()))

    @cached_property
    def _minutes(self) -> dict[int, list[tuple[int, int]]]:
        """weekday -> [(first minute open, first minute closed)], parsed once (a call asks)."""
        spans: dict[int, list[tuple[int, int]]] = {}
        for day, ranges in self.week.items():
            for r in ranges:
                m = _RANGE.match(r)
                assert m
                spans.setdefault(DAYS.index(day), []).append((int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])))
        return spans


class AgentDef(_Strict):
    username: str = Field(pattern=r"^[a-z][a-z0-9._-]{1,39}$")
    name: str
    extension: str = Field(pattern=r"^[A-Za-z0-9_-]{2,40}$")  # PJSIP endpoint name
    # SIP password. None (the default): generated into <data_dir>/secrets.yaml (ivr.site_secrets),
    # so none ships in agents.yaml or shows in the admin console.
    secret: str | None = Field(None, min_length=8)
    language: str = Field("ko", pattern=LANGUAGE)

    _one_line = field_validator("name")(one_line)

    @field_validator("secret")
    @classmethod
    def _one_line_secret(cls, value: str | None) -> str | None:
        return None if value is None else one_line(value)
    skills: dict[str, int] = Field(default_factory=dict)  # queue -> proficiency 1..5

    @field_validator("skills")
    @classmethod
    def _check_skills(cls, skills: dict[str, int]) -> dict[str, int]:
        for queue, level in skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"{queue}: proficiency {level} (expected 1 to 5)")
        return skills

    def penalty(self, queue: str) -> int:
        """Member penalty: experts (5) get 0 and are offered calls first."""
        return 5 - self.skills[queue]


class QueueConfig(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    schedules: dict[str, Schedule] = Field(default_factory=lambda: {"always": Schedule(always=True)})
    holidays: list[date] = Field(default_factory=list)
    queues: dict[str, Queue]
    agents: list[AgentDef] = Field(default_factory=list)
    timezone: str = "Asia/Seoul"

    _tz = field_validator("timezone")(time_zone)

    @model_validator(mode="after")
    def _check_refs(self) -> QueueConfig:
        problems = []
        for name, q in self.queues.items():
            if not re.fullmatch(NAME, name):
                problems.append(f"queue name {name!r} (expected lower-case letters, digits, '-')")
            q.name = name
            if q.hours not in self.schedules:
                problems.append(f"queues.{name}.hours: unknown schedule {q.hours!r}")
            if q.overflow and q.overflow.to not in self.queues:
                problems.append(f"queues.{name}.overflow.to: unknown queue {q.overflow.to!r}")
            if q.night_route.kind == "queue" and q.night_route.queue not in self.queues:
                problems.append(f"queues.{name}.night_route.queue: unknown queue {q.night_route.queue!r}")
        seen: set[str] = set()
        for agent in self.agents:
            for queue in agent.skills:
                if queue not in self.queues:
                    problems.append(f"agent {agent.username}: unknown queue {queue!r}")
            for key in (agent.username, agent.extension):
                if key in seen:
                    problems.append(f"agent {agent.username}: duplicate {key!r}")
                seen.add(key)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def setting(self, queue: str, key: str) -> object:
        """A queue's own value, else the default."""
        value = getattr(self.queues[queue], key)
        return getattr(self.defaults, key) if value is None else value

    def is_open(self, queue: str, when: datetime | None = None) -> bool:
        tz = ZoneInfo(self.timezone)  # cached by zoneinfo
        when = (when or datetime.now(tz)).astimezone(tz)
        return self.schedules[self.queues[queue].hours].is_open(when, self._holidays)

    @cached_property
    def _holidays(self) -> frozenset[date]:
        return frozenset(self.holidays)

    def members(self, queue: str) -> list[tuple[AgentDef, int]]:
        """The agents with this skill and their penalty."""
        return [(a, a.penalty(queue)) for a in self.agents if queue in a.skills]


def load_queues(folder: Path) -> QueueConfig:
    """Read ``queues.yaml`` (and ``agents.yaml`` when present); errors name file and line."""
    main = yamlfile.load(folder / "queues.yaml")
    if not isinstance(main.data, dict):
        raise yamlfile.DataError([f"{main.where(())}: expected a mapping"])
    data = dict(main.data)
    agents_file = folder / "agents.yaml"
    agents = yamlfile.load(agents_file) if agents_file.exists() else None
    if agents is not None:
        if not isinstance(agents.data, dict) or set(agents.data) - {"agents"}:
            raise yamlfile.DataError([f"{agents.where(())}: expected a mapping with one key 'agents'"])
        data["agents"] = agents.data.get("agents") or []
    try:
        return QueueConfig.model_validate(data)
    except Exception as exc:
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            src = agents if (agents is not None and loc[:1] == ("agents",)) else main
            problems.append(f"{src.where(loc)}: {'.'.join(map(str, loc)) or '(top level)'}: {err['msg']}")
        raise yamlfile.DataError(problems) from None
