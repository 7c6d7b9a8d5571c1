"""Admin pages: queues, skills/proficiencies and opening hours (queues/*.yaml), IVR menus and prompts.

Every change is validated before anything is written (the same loaders the services use, so an
error names file and line), written atomically, kept in the change history with its diff and
author, and then applied to Asterisk: ``ivr.asterisk`` renders and reloads through AMI when that
part is installed; when Asterisk cannot be reached the ``asterisk.apply`` job is queued.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import yaml
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field
from sqlalchemy import select

from ivr import yamlfile
from ivr.console.http import audit_request, iso, username
from ivr.console.models import ConfigChange
from ivr.console.render import ctx_of, render
from ivr.context import AppContext
from ivr.contracts import Stream
from ivr.languages import load_languages
from ivr.queues import NAME, QueueConfig, load_queues
from ivr.web.auth import requires
from ivr.web.bodies import Body, parse_fields, read_model
from ivr.web.errors import json_error

log = logging.getLogger("dasan.console.admin")
ADMINS = ("supervisor",)  # and admin, who may use every route
PROMPT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MENU_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.ya?ml$")
LOCK_KEY = web.AppKey("console_admin_lock", asyncio.Lock)


def editable_files(ctx: AppContext) -> dict[str, Path]:
    """Files an admin may edit, by key: ``queues``, ``agents``, ``menu:<file>``."""
    files = {"queues": ctx.settings.queues_dir / "queues.yaml", "agents": ctx.settings.queues_dir / "agents.yaml"}
    menus = ctx.settings.agi.menus_dir
    if menus.is_dir():
        for path in sorted(menus.glob("*.y*ml")):
            if MENU_NAME.match(path.name):
                files[f"menu:{path.name}"] = path
    return files


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def validate(ctx: AppContext, key: str, text: str) -> list[str]:
    """Problems of ``text`` as the new content of file ``key`` (empty list: valid).

    The candidate is checked together with the other files as they are on disk, with the loaders
    the services use: queues and agents (``load_queues``), and the IVR menu with the queues it
    names (``ivr.engine.runtime.load_checked``), so removing a queue a menu still routes to fails.
    """
    files = editable_files(ctx)
    with tempfile.TemporaryDirectory() as tmp:
        queues_dir, menus_dir = Path(tmp) / "q", Path(tmp) / "m"
        queues_dir.mkdir()
        menus_dir.mkdir()
        for other, path in files.items():
            content = text if other == key else (_read(path) if path.exists() else None)
            if content is not None:
                folder = queues_dir if other in ("queues", "agents") else menus_dir
                (folder / path.name).write_text(content, encoding="utf-8")
        try:
            qconf = load_queues(queues_dir)
            problems = _check_menus(menus_dir, queues_dir) or _render_problems(ctx, qconf)
        except yamlfile.DataError as exc:
            problems = list(exc.problems)
        except (OSError, ValueError) as exc:
            problems = [str(exc)]
        return [p.replace(f"{queues_dir}/", "").replace(f"{menus_dir}/", "") for p in problems]


def _render_problems(ctx: AppContext, qconf: QueueConfig) -> list[str]:
    """What Asterisk's files could not be rendered from (a value that is not a plain name...)."""
    try:
        from ivr.asterisk.render import RenderError, render
    except ImportError:  # Asterisk's part is not installed here
        return []
    with tempfile.TemporaryDirectory() as tmp:
        # Rendered with a throw-away data folder: the SIP passwords generated for agents of a
        # candidate that may never be saved stay out of the site's secrets file.
        candidate = ctx.settings.model_copy(deep=True)
        candidate.data_dir = Path(tmp)
        try:
            render(candidate, qconf)
        except RenderError as exc:
            return [str(exc)]
    return []


def _check_menus(menus_dir: Path, queues_dir: Path) -> list[str]:
    try:
        from ivr.engine.runtime import MENU_FILE, load_checked
    except ImportError:  # the IVR is an optional part of a deployment: check the YAML only
        return _yaml_problems(menus_dir)
    problems = _yaml_problems(menus_dir)
    if not problems and (menus_dir / MENU_FILE).exists():
        load_checked(menus_dir, queues_dir)  # raises DataError naming file and line
    return problems


def _yaml_problems(menus_dir: Path) -> list[str]:
    problems = []
    for path in sorted(menus_dir.glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path.name}: expected a mapping")
    return problems


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def apply_to_asterisk(ctx: AppContext, author: str) -> tuple[str, str]:
    """Render Asterisk's files and reload what changed over AMI; returns (status, message).

    When Asterisk cannot be reached the YAML stays written (it is the source of truth) and an
    ``asterisk.apply`` job is queued, so the AMI bridge or ``dasan asterisk apply`` retries.
    """
    try:
        from ivr.asterisk.apply import APPLY_STREAM, ApplyError, error_text
        from ivr.cluster.apply import apply_everywhere
    except ImportError:
        job_id = await ctx.bus.enqueue(Stream.ASTERISK_APPLY, {"requested_by": author})
        return "written", f"{Stream.ASTERISK_APPLY} job {job_id} queued"
    try:
        result = await apply_everywhere(ctx.settings)  # the one Asterisk, or every cluster node
    except (ApplyError, OSError, ValueError) as exc:  # DataError, RenderError are ValueErrors
        job_id = await ctx.bus.enqueue(APPLY_STREAM, {"requested_by": author})
        return "failed", f"{error_text(exc)} — asterisk.apply job {job_id} queued for a retry"
    parts = [f"changed: {', '.join(result.changed) or '-'}", f"reloaded: {', '.join(result.reloaded) or '-'}"]
    if result.restart_needed:
        parts.append(f"restart needed for: {', '.join(result.restart_needed)}")
    if result.failed:
        parts.append("reload failed: " + result.failures)
        return "failed", "; ".join(parts)
    return "applied", "; ".join(parts)


def queue_summary(qconf: QueueConfig) -> list[dict[str, Any]]:
    out = []
    for name, queue in qconf.queues.items():
        out.append({"name": name, "description": queue.description, "language": queue.language,
                    "hours": queue.hours, "strategy": qconf.setting(name, "strategy"),
                    "timeout": qconf.setting(name, "timeout"), "open": qconf.is_open(name),
                    "members": [(a.username, a.skills[name]) for a, _p in qconf.members(name)]})
    return out


@requires(*ADMINS)
async def admin_page(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    problems: list[str] = []
    queues: list[dict[str, Any]] = []
    schedules: dict[str, Any] = {}
    agents: list[tuple[str, str, dict[str, int]]] = []
    try:
        qconf = load_queues(ctx.settings.queues_dir)
        queues = queue_summary(qconf)
        schedules = {name: s.model_dump() for name, s in qconf.schedules.items()}
        agents = [(a.username, a.name, a.skills) for a in qconf.agents]
    except (yamlfile.DataError, OSError) as exc:
        problems = list(getattr(exc, "problems", [str(exc)]))
    async with ctx.db.session() as session:
        history = list((await session.execute(select(ConfigChange).order_by(ConfigChange.id.desc()).limit(30))).scalars())
    agents_sha = _sha(_read(editable_files(ctx)["agents"]))
    return render(request, "admin.html", queues=queues, schedules=schedules, problems=problems,
                  agents=agents, agents_sha=agents_sha,
                  files=list(editable_files(ctx)), history=history,
                  languages=load_languages(ctx.settings.agi.menus_dir).codes, iso=iso)


def _file_key(request: web.Request) -> tuple[str, Path]:
    key = request.query.get("file", "")
    files = editable_files(ctx_of(request))
    if key not in files:
        raise json_error(404, f"file: one of {', '.join(files)}")
    return key, files[key]


@requires(*ADMINS)
async def get_file(request: web.Request) -> web.Response:
    """GET /api/console/admin/file?file=queues: the text and its version (sha256)."""
    key, path = _file_key(request)
    text = _read(path)
    return web.json_response({"file": key, "text": text, "sha256": _sha(text)})


class FileText(Body):
    text: str  # the new file content


class FileSave(FileText):
    sha256: str | None = None  # the version the edit started from (a conflict if it moved)
    comment: str = ""  # for the history (the first 1000 characters)


class ProficienciesIn(Body):
    skills: dict[str, dict[Annotated[str, Field(pattern=NAME)], int]]  # {username: {queue: 1-5}}
    sha256: str | None = None
    comment: str = ""


@requires(*ADMINS)
async def validate_file(request: web.Request) -> web.Response:
    """POST /api/console/admin/validate?file=queues {"text"}: problems and the diff, nothing written."""
    key, path = _file_key(request)
    text = (await read_model(request, FileText)).text
    problems = validate(ctx_of(request), key, text)
    diff = "".join(difflib.unified_diff(_read(path).splitlines(True), text.splitlines(True), path.name, path.name))
    return web.json_response({"valid": not problems, "problems": problems, "diff": diff})


@requires(*ADMINS)
async def save_file(request: web.Request) -> web.Response:
    """POST /api/console/admin/file?file=queues {"text", "sha256", "comment"}: validate, write, apply."""
    key, path = _file_key(request)
    body = await read_model(request, FileSave)
    text = body.text
    return await _save(request, key, path, lambda _old: text, body.sha256, body.comment[:1000])


async def _save(request: web.Request, key: str, path: Path, change: Callable[[str], str], base: Any,
                comment: str) -> web.Response:
    """Under the lock: check the version, make the new text, validate, write, apply, keep history."""
    ctx = ctx_of(request)
    author = username(request)
    async with request.app[LOCK_KEY]:
        old = _read(path)
        if base is not None and base != _sha(old):
            raise json_error(409, "the file changed since you opened it; reload / 다른 사람이 먼저 수정했습니다. 새로고침하세요")
        text = change(old)
        problems = validate(ctx, key, text)
        if problems:
            return web.json_response({"applied": False, "problems": problems}, status=422)
        diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), path.name, path.name))
        if not diff:
            return web.json_response({"applied": False, "problems": [], "unchanged": True})
        _write_atomic(path, text)
        status, result = await apply_to_asterisk(ctx, author)
        async with ctx.db.transaction() as session:
            row = ConfigChange(author=author, kind=key.split(":")[0], target=str(path), comment=comment,
                               diff=diff, status=status, apply_result=result)
            session.add(row)
            await session.flush()
            change_id = row.id
    await audit_request(request, "config_changed", key, change_id=change_id, status=status)
    return web.json_response({"applied": status == "applied", "status": status, "result": result,
                              "change_id": change_id, "sha256": _sha(text), "diff": diff})


_AGENT_START = re.compile(r"^(\s*)- username:\s*(\S+)\s*$")
_SKILLS_LINE = re.compile(r"^(\s+)skills:\s*\{[^}]*\}\s*(#.*)?$")


def set_skills(text: str, skills: dict[str, dict[str, int]]) -> str:
    """agents.yaml with the ``skills:`` of the named agents replaced, comments and layout kept.

    Each agent's skills are one flow mapping line (``skills: {general-ko: 5, en: 3}``), as in the
    shipped file; an agent written otherwise is refused rather than rewritten."""
    lines = text.splitlines(keepends=True)
    current: str | None = None
    done: set[str] = set()
    for i, line in enumerate(lines):
        start = _AGENT_START.match(line)
        if start:
            current = start.group(2).strip("'\"")
            continue
        m = _SKILLS_LINE.match(line)
        if m and current in skills and current not in done:
            levels = ", ".join(f"{q}: {level}" for q, level in skills[current].items())
            tail = f"  {m.group(2)}" if m.group(2) else ""
            lines[i] = f"{m.group(1)}skills: {{{levels}}}{tail}\n"
            done.add(current)
    missing = sorted(set(skills) - done)
    if missing:
        raise json_error(422, f"agents without a one-line 'skills: {{...}}' in agents.yaml: {', '.join(missing)}; "
                              "edit the file instead / 파일 편집을 사용하세요")
    return "".join(lines)


@requires(*ADMINS)
async def save_proficiencies(request: web.Request) -> web.Response:
    """POST /api/console/admin/proficiencies {"skills": {username: {queue: 1-5}}, "sha256", "comment"}."""
    body = await read_model(request, ProficienciesIn)
    skills = body.skills
    ctx = ctx_of(request)
    try:
        current = {a.username: a.skills for a in load_queues(ctx.settings.queues_dir).agents}
    except (yamlfile.DataError, OSError):
        current = {}
    changed = {u: levels for u, levels in skills.items() if current.get(u) != levels}  # a minimal diff
    path = editable_files(ctx)["agents"]
    return await _save(request, "agents", path, lambda old: set_skills(old, changed), body.sha256,
                       body.comment[:1000])


@requires(*ADMINS)
async def history(request: web.Request) -> web.Response:
    async with ctx_of(request).db.session() as session:
        rows = list((await session.execute(select(ConfigChange).order_by(ConfigChange.id.desc()).limit(100))).scalars())
    return web.json_response({"items": [{"id": c.id, "at": iso(c.at), "author": c.author, "kind": c.kind,
                                         "target": c.target, "comment": c.comment, "diff": c.diff,
                                         "status": c.status, "result": c.apply_result} for c in rows]})


async def convert_prompt(source: Path, target: Path) -> None:
    """Any audio ffmpeg reads -> 8 kHz mono 16-bit WAV, the format Asterisk plays without transcoding."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.wav")
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-ac", "1", "-ar", "8000",
        "-acodec", "pcm_s16le", "-f", "wav", str(tmp), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise json_error(422, f"not an audio file ffmpeg can read / 오디오 파일이 아닙니다: {err.decode(errors='replace')[:300]}")
    os.replace(tmp, target)


def _not_a_placeholder(target: Path) -> None:
    """Take the file off the synthesized-placeholder list, so ``dasan prompts`` never replaces it."""
    try:
        from ivr.prompts import MANIFEST
    except ImportError:
        return
    manifest = target.parent / MANIFEST
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return
    if isinstance(entries, dict) and entries.pop(target.name, None) is not None:
        _write_atomic(manifest, json.dumps(entries, indent=1, sort_keys=True))


class PromptFields(Body):
    name: str = Field(pattern=PROMPT_NAME.pattern, description="lower-case letters, digits, '-' and '_'")
    language: str  # one of the registry's (checked against it)


@requires(*ADMINS)
async def upload_prompt(request: web.Request) -> web.Response:
    """POST /api/console/admin/prompts (multipart: name, language, file): converted for Asterisk."""
    ctx = ctx_of(request)
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError):  # a malformed multipart body (bad part headers, ...)
        raise json_error(400, "expected a multipart form with name, language and file") from None
    fields, upload = parse_fields(PromptFields, form), form.get("file")
    name, language = fields.name, fields.language
    known = load_languages(ctx.settings.agi.menus_dir).codes
    if language not in known:
        raise json_error(400, f"language: one of {', '.join(known)}")
    if not isinstance(upload, web.FileField):
        raise json_error(400, "file: attach an audio file / 파일을 첨부하세요")
    target = ctx.settings.asterisk.sounds_dir / language / "dasan" / f"{name}.wav"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "upload"
        source.write_bytes(upload.file.read())
        await convert_prompt(source, target)
    _not_a_placeholder(target)
    author = username(request)
    # Named relative to the sounds folder: an answer never tells where the server keeps its files.
    shown = f"{language}/dasan/{name}.wav"
    async with ctx.db.transaction() as session:
        change = ConfigChange(author=author, kind="prompt", target=shown,
                              comment=f"uploaded {upload.filename}", diff="", status="applied",
                              apply_result="converted to 8 kHz mono WAV")
        session.add(change)
        await session.flush()
        change_id = change.id
    await audit_request(request, "prompt_uploaded", shown, change_id=change_id)
    return web.json_response({"path": shown, "sound": f"dasan/{name}", "change_id": change_id}, status=201)


def setup(app: web.Application) -> None:
    app[LOCK_KEY] = asyncio.Lock()
    r = app.router
    r.add_get("/console/admin", admin_page)
    r.add_get("/api/console/admin/file", get_file)
    r.add_post("/api/console/admin/file", save_file)
    r.add_post("/api/console/admin/validate", validate_file)
    r.add_post("/api/console/admin/proficiencies", save_proficiencies)
    r.add_get("/api/console/admin/history", history)
    r.add_post("/api/console/admin/prompts", upload_prompt)
