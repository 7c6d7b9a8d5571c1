"""Render Asterisk's configuration from ``dasan.yaml`` and ``queues/*.yaml``.

The templates are plain Jinja2 files shipped in the package: ``ivr/asterisk/templates/`` (pjsip,
manager, queues, ...) and ``ivr/asterisk/dialplan/`` (extensions.conf), named ``<file>.j2``.
Every value written into a file passes through :func:`conf_value`, so a newline or a stray ``;`` in a name or password cannot change
the meaning of the configuration: it is refused (newlines) or escaped (``;``). Names that reach
section headers, the dialplan or ``[globals]`` are plain names (checked when queues/agents/menus
load, and the settings here), the time zone exists, and a display name inside callerid's
quotes is escaped (:func:`callerid_name`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ivr.asterisk.dialplan_names import dialplan_names
from ivr.cluster.node import asterisk_conf, node_settings
from ivr.config import Settings
from ivr.queues import QueueConfig, load_queues
from ivr.site_secrets import load_secrets, sip_passwords
from ivr.webrtc.asterisk_view import WebrtcConfigError, webrtc_context
from ivr.yamlfile import DataError

_HERE = Path(str(resources.files("ivr.asterisk")))
TEMPLATE_DIRS = (_HERE / "templates", _HERE / "dialplan")  # package data

# Rendered file -> template. Order is the order ``apply`` reloads in (manager last).
FILES: dict[str, str] = {
    "modules.conf": "modules.conf.j2",
    "logger.conf": "logger.conf.j2",
    "rtp.conf": "rtp.conf.j2",
    "http.conf": "http.conf.j2",
    "sorcery.conf": "sorcery.conf.j2",
    "cdr.conf": "cdr.conf.j2",
    "cdr_manager.conf": "cdr_manager.conf.j2",
    "cel.conf": "cel.conf.j2",
    "musiconhold.conf": "musiconhold.conf.j2",
    "pjsip.conf": "pjsip.conf.j2",
    "queuerules.conf": "queuerules.conf.j2",
    "queues.conf": "queues.conf.j2",
    "extensions.conf": "extensions.conf.j2",
    "manager.conf": "manager.conf.j2",
}
# Files holding passwords: written readable by the owner (and group) only.
SECRET_FILES = frozenset({"pjsip.conf", "manager.conf", "rtp.conf"})  # rtp.conf: a TURN password


class RenderError(ValueError):
    pass


def conf_value(value: Any) -> Any:
    """Finalize hook for every ``{{ value }}``: one line, ``;`` escaped (it starts a comment), and
    no ``${``/``$[`` (the dialplan would evaluate them; no value of ours needs one anywhere)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | Path):
        text = str(value)
        if "\n" in text or "\r" in text or "\x00" in text:
            raise RenderError(f"value {text[:40]!r} has a line break; Asterisk configuration values are one line")
        if "${" in text or "$[" in text:
            raise RenderError(f"value {text[:40]!r} has '${{' or '$[', which Asterisk would evaluate")
        return text.replace(";", r"\;")
    return value


@dataclass(frozen=True)
class AgentView:
    username: str
    name: str
    extension: str
    secret: str
    language: str
    video: bool
    # (queue, penalty), sorted by queue name
    memberships: list[tuple[str, int]]


@dataclass(frozen=True)
class QueueView:
    name: str
    description: str
    language: str
    strategy: str
    timeout: int
    wrapup_seconds: int
    max_wait_seconds: int
    announce_position: bool
    announce_frequency: int
    musicclass: str
    service_level_seconds: int
    penalty_rules: list[tuple[int, int]]
    start_max_penalty: int | None
    overflow_to: str
    overflow_after: int
    media: str
    members: list[tuple[str, str, int]]  # (extension, username, penalty)


def _connectable(host: str) -> str:
    """An address Asterisk can dial: a wildcard bind address means this machine."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _check_networks(label: str, values: list[str]) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise RenderError(f"{label}: {value!r} is not an address or network (e.g. 203.0.113.5/32)") from None


# Settings written where Asterisk evaluates or parses them: [globals] (IVR_HOST, RECORDINGS_DIR
# are expanded at load and in every Set/AGI), a manager.conf section name, a music folder.
_HOST = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")
_PATH = re.compile(r"^/?[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*/?$")
_SECTION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_plain(settings: Settings, q: QueueConfig) -> None:
    """Refuse values that would be evaluated (``${``, ``$[``) or change a file's structure."""
    from ivr.queues import CLASS_NAME, time_zone  # also checked when queues.yaml loads

    ast = settings.asterisk
    checks: list[tuple[str, str, re.Pattern[str]]] = [
        ("ami.username", settings.ami.username, _SECTION),
        ("asterisk.ivr_host", ast.ivr_host or "", re.compile(r"^$|" + _HOST.pattern)),
        ("agi.host", settings.agi.host, _HOST),
        ("recordings.dir", str(settings.recordings.dir.resolve()), _PATH),
        ("asterisk.moh_dir", str(ast.moh_dir), _PATH),
    ]
    for label, value, pattern in checks:
        if not pattern.fullmatch(value) or ".." in value.split("/"):
            raise RenderError(f"{label}: {value[:80]!r} has characters Asterisk would read as syntax "
                              "(allowed: letters, digits, '.', '_', '-', '/')")
    try:
        time_zone(q.timezone)
        for name in q.queues:
            musicclass = str(q.setting(name, "musicclass"))
            if not re.fullmatch(CLASS_NAME, musicclass):
                raise ValueError(f"queues.{name}.musicclass: {musicclass!r} is not a class name ([a-z0-9_-])")
    except ValueError as exc:
        raise RenderError(str(exc)) from None


def callerid_name(name: str) -> str:
    """A display name inside callerid's quotes: main/callerid.c strips the quotes and
    ast_unescape_quoted takes each backslash as an escape, so quotes and backslashes are escaped."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


def queue_views(q: QueueConfig) -> list[QueueView]:
    views = []
    for name, queue in q.queues.items():
        rules = sorted((r.after_seconds, r.max_penalty) for r in queue.penalty_rules)
        # With rules, a caller is first offered to the best-skilled agents (penalty 0-1:
        # proficiency 4-5); each rule then widens the circle.
        start = min(1, rules[0][1]) if rules else None
        max_wait = int(q.setting(name, "max_wait_seconds"))  # type: ignore[call-overload]
        views.append(QueueView(
            name=name,
            description=queue.description,
            language=queue.language,
            strategy=str(q.setting(name, "strategy")),
            timeout=int(q.setting(name, "timeout")),  # type: ignore[call-overload]
            wrapup_seconds=int(q.setting(name, "wrapup_seconds")),  # type: ignore[call-overload]
            max_wait_seconds=max_wait,
            announce_position=bool(q.setting(name, "announce_position")),
            announce_frequency=int(q.setting(name, "announce_frequency")),  # type: ignore[call-overload]
            musicclass=str(q.setting(name, "musicclass")),
            service_level_seconds=q.defaults.service_level_seconds,
            penalty_rules=rules,
            start_max_penalty=start,
            overflow_to=queue.overflow.to if queue.overflow else "",
            overflow_after=queue.overflow.after_seconds if queue.overflow else max_wait,
            media=queue.media,
            members=sorted(((a.extension, a.username, p) for a, p in q.members(name)), key=lambda m: (m[2], m[0])),
        ))
    return views


def agent_views(q: QueueConfig, passwords: dict[str, str]) -> list[AgentView]:
    """``passwords``: username -> SIP password (``ivr.site_secrets.sip_passwords``)."""
    video_queues = {name for name, queue in q.queues.items() if queue.media == "video"}
    return [
        AgentView(
            username=a.username, name=a.name, extension=a.extension, secret=passwords[a.username],
            language=a.language,
            video=bool(video_queues & set(a.skills)),
            memberships=sorted((queue, a.penalty(queue)) for queue in a.skills),
        )
        for a in q.agents
    ]


def context(settings: Settings, q: QueueConfig) -> dict[str, Any]:
    ast = settings.asterisk
    if ast.default_queue not in q.queues:
        raise RenderError(f"asterisk.default_queue: {ast.default_queue!r} is not a queue in {settings.queues_dir}/queues.yaml")
    if ast.rtp_start >= ast.rtp_end:
        raise RenderError(f"asterisk.rtp_start ({ast.rtp_start}) must be below asterisk.rtp_end ({ast.rtp_end})")
    _check_networks("asterisk.trunk_match", ast.trunk_match)
    _check_networks("asterisk.ami_permit", ast.ami_permit)
    _check_plain(settings, q)
    for number in ast.inbound_numbers:
        if not number or not all(c.isalnum() or c in "+*#" for c in number):
            raise RenderError(f"asterisk.inbound_numbers: {number!r} is not a dialable number")
    # Secrets left empty (AMI user, agents' SIP passwords) come from <data_dir>/secrets.yaml,
    # generated there on first use: none ships in the package.
    load_secrets(settings, check=False)
    agents = agent_views(q, sip_passwords(settings, q.agents))
    if any(a.extension in ("trunk", "anonymous") for a in agents):
        raise RenderError("agents.yaml: 'trunk' and 'anonymous' are reserved endpoint names")
    queues = queue_views(q)
    classes = sorted({v.musicclass for v in queues} | {"default"})
    try:
        webrtc = webrtc_context(settings, [a.username for a in agents], list(q.queues))
    except WebrtcConfigError as exc:
        raise RenderError(str(exc)) from None
    return {
        "settings": settings,
        "site_name": settings.site_name,
        "timezone": q.timezone,
        "ivr_host": ast.ivr_host or f"{_connectable(settings.agi.host)}:{settings.agi.port}",
        "recordings_dir": settings.recordings.dir.resolve(),
        "default_queue": ast.default_queue,
        "inbound_numbers": ast.inbound_numbers,
        "sip_bind": ast.sip_bind,
        "trunk_match": ast.trunk_match,
        "trunk_contact": ast.trunk_contact,
        "rtp_start": ast.rtp_start,
        "rtp_end": ast.rtp_end,
        "moh_dir": ast.moh_dir,
        "moh_classes": classes,
        "qualify": ast.agent_qualify_seconds,
        "ami": settings.ami,
        "ami_bind": settings.ami.host,
        "ami_permit": ast.ami_permit,
        "agents": agents,
        "queues": queues,
        "webrtc": webrtc,
        "survey": survey_view(settings),
        "supervise": supervise_view(),
        "live_listen": live_listen_target(settings.speech.live_listen),
        **dialplan_names(),  # var / ref / result / event: the names in ivr.contracts
    }


def live_listen_target(listen: str) -> str:
    """host:port Asterisk's AudioSocket() connects to ("" = live partials off)."""
    if not listen:
        return ""
    host, _, port = listen.rpartition(":")
    return f"{_connectable(host or '127.0.0.1')}:{port}"


def supervise_view() -> dict[str, Any]:
    """Listen / whisper / barge (ivr.ami.supervise): the context the AMI bridge originates into."""
    from ivr.ami.supervise import CHANSPY_OPTIONS, CONTEXT, other_context_regex

    # other_contexts: manager.conf's filter that keeps DTMF events to this context
    return {"context": CONTEXT, "modes": CHANSPY_OPTIONS, "other_contexts": other_context_regex(CONTEXT)}


def survey_view(settings: Settings) -> dict[str, Any]:
    """The IVR's survey prompts and timing (ivr/menus/main.yaml): the dialplan asks the same
    question itself when the survey AGI could not run."""
    from ivr.engine.menu import load_menus
    from ivr.engine.runtime import MENU_FILE

    menus = load_menus(settings.agi.menus_dir / MENU_FILE)
    return {"question": menus.sound("survey-question"), "thanks": menus.sound("survey-thanks"),
            "timeout": max(1, round(menus.timeout_seconds)), "tries": menus.max_failures}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
        undefined=jinja2.StrictUndefined,
        finalize=conf_value,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["callerid_name"] = callerid_name
    return env


def render(settings: Settings, q: QueueConfig | None = None, node: str | None = None) -> dict[str, str]:
    """File name -> content, for every file in :data:`FILES`.

    Raises :class:`RenderError` (or ``DataError`` for the YAML files) naming what is wrong.
    """
    view = None
    if node is not None:  # one node of a cluster (ivr.cluster.node)
        try:
            settings, view = node_settings(settings, node)
        except KeyError as exc:
            raise RenderError(str(exc.args[0])) from None
        if settings.webrtc.enabled:
            raise RenderError("webrtc.enabled: browsers' calls are not carried through the cluster's Kamailio yet")
    if q is None:
        q = load_queues(settings.queues_dir)
    env = environment()
    values = context(settings, q)
    values["cluster_node"] = view
    out = {}
    for name, template in FILES.items():
        try:
            out[name] = env.get_template(template).render(values, file_name=name)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{template}: {exc}") from exc
    if view is not None:
        out["asterisk.conf"] = asterisk_conf(view)
    return out


def write(files: dict[str, str], out_dir: Path) -> list[str]:
    """Write the files that differ from what is in ``out_dir``; returns their names.

    Each file is replaced atomically (written beside, then renamed), so Asterisk never
    reads half a file during a reload.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files.items():
        target = out_dir / name
        data = text.encode()
        if target.exists() and target.read_bytes() == data:
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o640 if name in SECRET_FILES else 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        changed.append(name)
    return changed


__all__ = ["FILES", "DataError", "RenderError", "render", "write"]
