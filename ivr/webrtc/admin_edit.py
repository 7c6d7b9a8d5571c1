"""POST /api/console/admin/webrtc: an administrator edits the browser-call settings.

The body (pydantic; a bad value is a 400 naming the field, nothing written) changes any of the
ports, WebSocket URL, certificate paths, STUN/TURN servers and TURN credentials, the softphone
agents and which agents take video calls (the video queue's skill in agents.yaml). The result
is checked as a whole (TLS needs both files, the ports differ, the TURN server has credentials)
and rendered into a throw-away folder with the candidate agents (422 with the problems, nothing
written); then ``<data_dir>/webrtc.yaml`` (and ``secrets.yaml`` for a TURN secret, never shown
back), agents.yaml when the video agents changed, the change history and the audit log are
written and Asterisk's files are rendered and reloaded like any admin edit (a reload, not a
restart: calls stay up).
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from aiohttp import web
from pydantic import AfterValidator, ConfigDict, Field, field_validator

from ivr import yamlfile
from ivr.config import WebrtcSettings
from ivr.console import admin
from ivr.console.http import audit_request, username
from ivr.console.models import ConfigChange
from ivr.console.render import ctx_of
from ivr.context import AppContext
from ivr.queues import QueueConfig, load_queues
from ivr.site_secrets import save_secrets, weakness
from ivr.web.auth import requires
from ivr.web.bodies import Body, read_model
from ivr.web.errors import json_error
from ivr.webrtc import site_settings
from ivr.webrtc.asterisk_view import WebrtcConfigError, host_port

AGENT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
PEM_PATH = r"^(/[A-Za-z0-9._+@-]+)+$"  # an absolute path, nothing a config line could be split on
WS_URL = r"^wss?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"
TURN_USER = r"^[A-Za-z0-9._@:-]{1,64}$"
SECRET_MIN = {"turn_secret": 16, "turn_password": 8}
VIDEO_SKILL_LEVEL = 3  # proficiency given to an agent newly allowed to take video calls


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _matching(pattern: str, problem: str) -> AfterValidator:
    """A text field's rule: empty, or all of it matching ``pattern``; else ``problem``."""

    def check(value: str | None) -> str | None:
        if value and not _matches(pattern, value):
            raise ValueError(problem)
        return value

    return AfterValidator(check)


PemPath = Annotated[str | None, _matching(
    PEM_PATH, "an absolute path of a PEM file Asterisk can read, e.g. /etc/asterisk/keys/pbx.pem")]
WsUrl = Annotated[str | None, _matching(WS_URL, "ws://host:port/ws or wss://host:port/ws (empty: from the ports)")]
TurnUser = Annotated[str | None, _matching(TURN_USER, "letters, digits and . _ @ : -")]


class WebrtcEdit(Body):
    """The fields to change; one left out (or null) keeps its value. For the TURN secret and
    password an empty string removes it. JSON's own types only (``Body``); unlike other bodies
    an unknown field is refused: a misspelt setting must not be dropped silently."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool | None = None
    http_bind: str | None = None
    http_port: int | None = Field(None, ge=1, le=65535)
    tls: bool | None = None
    tls_bind: str | None = None
    tls_port: int | None = Field(None, ge=1, le=65535)
    tls_cert_file: PemPath = Field(None, max_length=400)
    tls_private_key: PemPath = Field(None, max_length=400)
    ws_url: WsUrl = Field(None, max_length=300)
    stun_server: str | None = Field(None, max_length=260)
    turn_server: str | None = Field(None, max_length=260)
    turn_username: TurnUser = Field(None, max_length=64)
    turn_secret: str | None = Field(None, max_length=200)
    turn_password: str | None = Field(None, max_length=200)
    softphone_agents: list[str] | None = Field(None, max_length=1000)
    video_agents: list[str] | None = Field(None, max_length=1000)
    comment: str = Field("", max_length=1000)
    version: str | None = Field(None, max_length=64)

    @field_validator("http_bind", "tls_bind")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)  # ValueError: "does not appear to be an IPv4 or IPv6 address"
        return value

    @field_validator("stun_server", "turn_server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value:
            try:
                host_port("server", value, 3478)
            except WebrtcConfigError:
                raise ValueError("host:port, e.g. turn.example.org:3478") from None
        return value

    @field_validator("turn_secret", "turn_password")
    @classmethod
    def _secret(cls, value: str | None, info: Any) -> str | None:
        if value:
            if any(c.isspace() or c in ";\"'" for c in value):
                raise ValueError("no spaces, quotes or ';'")
            why = weakness(value, SECRET_MIN[info.field_name])
            if why:
                raise ValueError(f"the value {why}")
        return value

    @field_validator("softphone_agents", "video_agents")
    @classmethod
    def _agents(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            bad = [name for name in value if not _matches(AGENT, name)]
            if bad:
                raise ValueError(f"not agent usernames: {', '.join(bad[:5])}")
            value = sorted(set(value))
        return value


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def version_of(ctx: AppContext) -> str:
    """What an edit is based on: the data folder's webrtc.yaml and agents.yaml as they are."""
    files = (site_settings.site_file(ctx.settings), admin.editable_files(ctx)["agents"])
    return _sha("\0".join(admin._read(path) for path in files))


def video_agents(settings_video_queue: str, q: QueueConfig) -> list[str]:
    return sorted(a.username for a in q.agents if settings_video_queue in a.skills)


def edited_values(current: WebrtcSettings, edit: WebrtcEdit) -> dict[str, Any]:
    """The editable keys as they will be (paths and all as YAML-ready values), secrets apart."""
    out: dict[str, Any] = {}
    for key in site_settings.EDITABLE:
        value = getattr(edit, key)
        if value is None:
            value = getattr(current, key)
        if key in ("tls_cert_file", "tls_private_key"):
            value = str(value) if value else None
        out[key] = value
    return out


def whole_problems(w: WebrtcSettings) -> list[str]:
    """What the fields allow one by one but not together."""
    problems = []
    if w.tls and not (w.tls_cert_file and w.tls_private_key):
        problems.append("tls_cert_file, tls_private_key: both are needed for TLS (wss) / TLS에는 인증서와 개인 키가 모두 필요합니다")
    if w.tls and w.tls_port == w.http_port:
        problems.append("tls_port: must differ from http_port / ws와 wss 포트가 같을 수 없습니다")
    if w.turn_server and not w.turn_secret and not (w.turn_username and w.turn_password):
        problems.append("turn_server: give turn_secret, or turn_username and turn_password / TURN 인증 정보가 필요합니다")
    if bool(w.turn_username) != bool(w.turn_password):
        problems.append("turn_username, turn_password: give both or neither / 둘 다 넣거나 둘 다 비우세요")
    return problems


def render_problems(ctx: AppContext, candidate: WebrtcSettings, agents_text: str) -> list[str]:
    """Render Asterisk's files from the candidate into a throw-away folder (nothing of the site's touched)."""
    from ivr.asterisk.render import RenderError, render

    with tempfile.TemporaryDirectory() as tmp:
        queues_dir = Path(tmp) / "queues"
        queues_dir.mkdir()
        for key, name in (("queues", "queues.yaml"), ("agents", "agents.yaml")):
            text = agents_text if key == "agents" else admin._read(admin.editable_files(ctx)[key])
            (queues_dir / name).write_text(text, encoding="utf-8")
        settings = ctx.settings.model_copy(deep=True)
        settings.webrtc = candidate
        settings.data_dir = Path(tmp) / "data"
        settings.queues_dir = queues_dir
        try:
            render(settings, load_queues(queues_dir))
        except yamlfile.DataError as exc:
            return [p.replace(f"{queues_dir}/", "") for p in exc.problems]
        except (RenderError, WebrtcConfigError) as exc:
            return [str(exc)]
    return []


def form_values(w: WebrtcSettings) -> dict[str, Any]:
    """The editable keys as the form shows them (no secrets; a path unset is "")."""
    return {key: "" if getattr(w, key) is None else _plain(getattr(w, key)) for key in site_settings.EDITABLE}


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _dump(values: dict[str, Any]) -> str:
    return ("# Browser-call settings edited in the admin console (over dasan.yaml webrtc:; docs/webrtc.md).\n"
            "# TURN secrets are in secrets.yaml, never here.\n"
            + yaml.safe_dump(values, allow_unicode=True, sort_keys=False))


@requires(*admin.ADMINS)
async def save_webrtc(request: web.Request) -> web.Response:
    edit = await read_model(request, WebrtcEdit)
    ctx = ctx_of(request)
    author = username(request)
    async with request.app[admin.LOCK_KEY]:
        site_settings.overlay(ctx.settings)  # an edit saved meanwhile by another web process or node
        if edit.version is not None and edit.version != version_of(ctx):
            raise json_error(409, "the settings changed since you opened them; reload / 다른 사람이 먼저 수정했습니다. 새로고침하세요")
        current = ctx.settings.webrtc
        values = edited_values(current, edit)
        secrets = {key: value for key in site_settings.SECRET_KEYS if (value := getattr(edit, key)) is not None}
        candidate = WebrtcSettings.model_validate(current.model_dump() | values | secrets)
        agents_path = admin.editable_files(ctx)["agents"]
        old_agents = admin._read(agents_path)
        agents_text = old_agents
        try:
            q = load_queues(ctx.settings.queues_dir)
        except (yamlfile.DataError, OSError) as exc:
            return web.json_response({"applied": False, "problems": list(getattr(exc, "problems", [str(exc)]))},
                                     status=422)
        known = {a.username for a in q.agents}
        problems = [f"{field}: {', '.join(unknown)} not in agents.yaml / 상담원 목록에 없습니다"
                    for field, names in (("softphone_agents", edit.softphone_agents), ("video_agents", edit.video_agents))
                    if names and (unknown := sorted(set(names) - known))]
        if edit.video_agents is not None and not problems:
            wanted, queue = set(edit.video_agents), candidate.video_queue
            changed = {}
            for a in q.agents:
                if (a.username in wanted) != (queue in a.skills):
                    skills = {k: v for k, v in a.skills.items() if k != queue}
                    if a.username in wanted:
                        skills[queue] = VIDEO_SKILL_LEVEL
                    changed[a.username] = skills
            if changed:
                agents_text = admin.set_skills(old_agents, changed)
        problems = problems or whole_problems(candidate) or render_problems(ctx, candidate, agents_text)
        if problems:
            return web.json_response({"applied": False, "problems": problems}, status=422)
        site_path = site_settings.site_file(ctx.settings)
        old_site = admin._read(site_path)
        new_site = _dump(values)
        secret_changes = {k: v for k, v in secrets.items() if v != getattr(current, k)}
        diffs = {kind: "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), path.name, path.name))
                 for kind, path, old, new in (("webrtc", site_path, old_site, new_site),
                                              ("agents", agents_path, old_agents, agents_text))}
        if secret_changes:
            diffs["webrtc"] += "".join(f"# {key}: {'changed' if value else 'removed'} (secrets.yaml, not shown)\n"
                                       for key, value in sorted(secret_changes.items()))
        fields = sorted([k for k, v in values.items() if v != _plain(getattr(current, k))] + list(secret_changes)
                        + (["video_agents"] if diffs["agents"] else []))
        if not any(diffs.values()):
            return web.json_response({"applied": False, "problems": [], "unchanged": True, "version": version_of(ctx)})
        if diffs["webrtc"]:
            admin._write_atomic(site_path, new_site)
            save_secrets(ctx.settings, site_settings.SECRETS_SECTION, secret_changes)
        if diffs["agents"]:
            admin._write_atomic(agents_path, agents_text)
        site_settings.overlay(ctx.settings)  # this process's settings now (the /call page, the softphone)
        status, result = await admin.apply_to_asterisk(ctx, author)
        change_ids = []
        async with ctx.db.transaction() as session:
            for kind, path in (("webrtc", site_path), ("agents", agents_path)):
                if diffs[kind]:
                    row = ConfigChange(author=author, kind=kind, target=str(path), comment=edit.comment,
                                       diff=diffs[kind], status=status, apply_result=result)
                    session.add(row)
                    await session.flush()
                    change_ids.append(row.id)
    await audit_request(request, "config_changed", "webrtc", change_ids=change_ids, status=status, fields=fields)
    return web.json_response({"applied": status == "applied", "status": status, "result": result,
                              "change_ids": change_ids, "fields": fields, "version": version_of(ctx)})
