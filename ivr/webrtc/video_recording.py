"""Sign-language video for review: the agent's browser records the call and uploads it here.

MixMonitor keeps audio only, so the console softphone records the citizen's video with both
voices mixed (MediaRecorder, WebM) and sends it in chunks while the call goes on (a long call
never needs one huge request): ``POST .../video/chunks?seq=N`` appends the next chunk,
``POST .../video/finish {"sha256"}`` checks the whole file against the browser's own SHA-256,
files it in the recordings store next to the call's audio (``YYYY/MM/DD/<linkedid>-video.webm``)
as a ``recordings`` row (format ``webm``, checksum, integrity ``ok``) and audits it. Only the
contact's own agent (or a supervisor) may upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from ivr.console.http import audit_request, int_match, username
from ivr.console.render import ctx_of
from ivr.db.models import Agent, Contact, Recording
from ivr.recordings.store import StoreError, layout_path, sha256_file
from ivr.web.auth import current_user, requires
from ivr.web.bodies import Body, read_model
from ivr.web.errors import json_error
from ivr.web.limits import read_capped

MAX_CHUNK_BYTES = 4 * 1024 * 1024
MAX_VIDEO_BYTES = 2 * 1024 * 1024 * 1024
EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # every WebM file starts with an EBML header
PARTIAL_DIR = ".partial-video"


def _partial(root: Path, contact_id: int, user: str) -> Path:
    return root / PARTIAL_DIR / f"{contact_id}-{hashlib.sha256(user.encode()).hexdigest()[:16]}.webm"


async def _own_contact(request: web.Request, contact_id: int) -> Contact:
    user = current_user(request)
    assert user is not None
    async with ctx_of(request).db.session() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None:
            raise json_error(404, "no such contact / 문의가 없습니다")
        if user.role == "agent":
            agent = await session.get(Agent, contact.agent_id) if contact.agent_id is not None else None
            if agent is None or agent.username != user.username:
                raise json_error(403, "this contact is not your call / 내 상담이 아닙니다")
    return contact


@requires("agent", "supervisor")
async def upload_chunk(request: web.Request) -> web.Response:
    """POST /api/console/contacts/{id}/video/chunks?seq=N: the next piece of the recording."""
    contact_id = int_match(request)
    seq_text = request.query.get("seq", "")
    if not seq_text.isdigit():
        raise json_error(400, "seq: the chunk's number, from 0")
    seq = int(seq_text)
    await _own_contact(request, contact_id)
    data = await read_capped(request.content, MAX_CHUNK_BYTES)
    if len(data) > MAX_CHUNK_BYTES:
        raise json_error(422, f"a chunk is at most {MAX_CHUNK_BYTES} bytes")
    if seq == 0 and not data.startswith(EBML_MAGIC):
        raise json_error(422, "the recording must be WebM (EBML header)")
    path = _partial(ctx_of(request).settings.recordings.dir, contact_id, username(request))
    stored = await asyncio.to_thread(_append, path, seq, data)
    return web.json_response({"seq": seq, "bytes": stored})


def _append(path: Path, seq: int, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count_file = path.with_suffix(".count")
    expected = int(count_file.read_text()) if seq > 0 and count_file.exists() else 0
    if seq != expected:
        raise json_error(409, f"seq: expected chunk {expected}, got {seq}")
    size = path.stat().st_size if seq > 0 and path.exists() else 0
    if size + len(data) > MAX_VIDEO_BYTES:
        raise json_error(422, "the recording is too large")
    with path.open("ab" if seq > 0 else "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    count_file.write_text(str(seq + 1))
    return size + len(data)


class FinishIn(Body):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="the recording's SHA-256 in hex")
    seconds: float | None = None  # its length, as the browser measured it


@requires("agent", "supervisor")
async def finish(request: web.Request) -> web.Response:
    """POST /api/console/contacts/{id}/video/finish {"sha256", "seconds"?}: store the recording."""
    contact_id = int_match(request)
    body = await read_model(request, FinishIn)
    claimed = body.sha256.lower()
    seconds = body.seconds
    duration = float(seconds) if seconds is not None and 0 < seconds < 86400 else None  # else not known
    contact = await _own_contact(request, contact_id)
    ctx = ctx_of(request)
    root = ctx.settings.recordings.dir
    partial = _partial(root, contact_id, username(request))
    if not partial.exists():
        async with ctx.db.session() as session:  # a finish sent twice: the first one filed it
            done = (await session.execute(select(Recording).where(
                Recording.contact_id == contact_id, Recording.sha256 == claimed))).scalar_one_or_none()
        if done is not None:
            return web.json_response({"recording_id": done.id, "path": done.path, "sha256": claimed,
                                      "bytes": done.size_bytes})
        raise json_error(409, "no chunks were uploaded for this contact")
    actual = await asyncio.to_thread(sha256_file, partial)
    if actual != claimed:
        await audit_request(request, "video_upload_corrupt", f"contact:{contact_id}", claimed=claimed, actual=actual)
        raise json_error(422, "the uploaded recording does not match its checksum; nothing was kept")
    try:
        relative = layout_path(contact.call_id or f"contact-{contact_id}", contact.started_at or datetime.now(UTC),
                               "-video.webm")
    except StoreError as exc:
        raise json_error(400, str(exc)) from None
    target = root / relative
    size = partial.stat().st_size
    await asyncio.to_thread(_move, partial, target)
    async with ctx.db.transaction() as session:
        existing = (await session.execute(select(Recording).where(Recording.path == relative))).scalar_one_or_none()
        rec = existing or Recording(path=relative)
        rec.contact_id, rec.format, rec.size_bytes, rec.sha256 = contact_id, "webm", size, actual
        rec.integrity, rec.duration_seconds = "ok", duration
        rec.transcription_status, rec.transcription_error = "no_model", "video recording: its audio is in the call's recording"
        session.add(rec)
        await session.flush()
        rec_id = rec.id
    await audit_request(request, "video_recorded", f"recording:{rec_id}", contact=contact_id, sha256=actual, bytes=size)
    return web.json_response({"recording_id": rec_id, "path": relative, "sha256": actual, "bytes": size}, status=201)


def _move(partial: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(partial), target)
    partial.with_suffix(".count").unlink(missing_ok=True)


def setup(app: web.Application, _ctx: Any = None) -> None:
    app.router.add_post(r"/api/console/contacts/{id:\d{1,12}}/video/chunks", upload_chunk)
    app.router.add_post(r"/api/console/contacts/{id:\d{1,12}}/video/finish", finish)
