"""Reviewer API: find recordings, stream their audio (HTTP range requests), read transcripts.

Every route needs a signed-in reviewer or supervisor (or admin), and every access, including
each audio request, is written to the audit log with who, what and from where.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, StrictBool
from sqlalchemy import func, select

from ivr.context import AppContext
from ivr.db.models import Contact, Recording, TranscriptSegment
from ivr.redaction.engine import mask_text
from ivr.search import SearchError, search_text
from ivr.speech.audio import STEREO_SLN, wav_header
from ivr.web.auth import audit, current_user, requires
from ivr.web.bodies import read_model
from ivr.web.context import context_of
from ivr.web.errors import json_error
from ivr.web.params import MAX_DB_ID, path_id, query_int

READERS = ("reviewer", "supervisor")
MAX_LIMIT = 500
CONTENT_TYPES = {".wav": "audio/wav", ".ulaw": "audio/basic", ".ul": "audio/basic", ".pcm": "audio/basic",
                 ".alaw": "audio/x-alaw-basic", ".al": "audio/x-alaw-basic",
                 ".webm": "video/webm"}  # sign-language video recorded by the console (ivr.webrtc)
STATUSES = ("pending", "running", "done", "failed", "no_model")



class LegalHoldIn(BaseModel):
    hold: StrictBool

def _ctx(request: web.Request) -> AppContext:
    return context_of(request)


async def _audit(request: web.Request, action: str, target: str = "", **data: Any) -> None:
    user = current_user(request)
    await audit(_ctx(request), user.username if user else "?", action, target, ip=request.remote, **data)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def recording_json(rec: Recording, contact: Contact | None) -> dict[str, Any]:
    return {
        "id": rec.id, "path": rec.path, "contact_id": rec.contact_id,
        "call_id": contact.call_id if contact else None,
        "language": contact.language if contact else None,
        "queue": contact.queue if contact else None,
        "format": rec.format, "channels": rec.channels, "sample_rate": rec.sample_rate,
        "duration_seconds": rec.duration_seconds, "size_bytes": rec.size_bytes, "sha256": rec.sha256,
        "integrity": rec.integrity, "legal_hold": rec.legal_hold,
        "created_at": _iso(rec.created_at), "purged_at": _iso(rec.purged_at),
        "transcription_status": rec.transcription_status, "transcription_error": rec.transcription_error,
        "transcription_attempts": rec.transcription_attempts,
    }


def _date(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise json_error(400, f"{name}: expected an ISO date such as 2026-11-25 or 2026-11-25T09:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int_param(request: web.Request, name: str, default: int | None = None) -> int | None:
    # Bounded to what the database takes: a 30-digit offset or contact_id is a 400, not a 500.
    return query_int(request, name, default, low=-MAX_DB_ID, high=MAX_DB_ID)


@requires(*READERS)
async def list_recordings(request: web.Request) -> web.Response:
    """GET /api/recordings?contact_id&call_id&status&language&queue&integrity&from&to&limit&offset"""
    q = request.query
    stmt = select(Recording, Contact).outerjoin(Contact, Recording.contact_id == Contact.id)
    filters: dict[str, str] = {}
    if (contact_id := _int_param(request, "contact_id")) is not None:
        stmt = stmt.where(Recording.contact_id == contact_id)
    if q.get("call_id"):
        stmt = stmt.where(Contact.call_id == q["call_id"])
    if q.get("status"):
        if q["status"] not in STATUSES:
            raise json_error(400, f"status: one of {', '.join(STATUSES)}")
        stmt = stmt.where(Recording.transcription_status == q["status"])
    if q.get("integrity"):
        stmt = stmt.where(Recording.integrity == q["integrity"])
    if q.get("language"):
        stmt = stmt.where(Contact.language == q["language"])
    if q.get("queue"):
        stmt = stmt.where(Contact.queue == q["queue"])
    if q.get("from"):
        stmt = stmt.where(Recording.created_at >= _date(q["from"], "from"))
    if q.get("to"):
        stmt = stmt.where(Recording.created_at < _date(q["to"], "to"))
    if q.get("include_purged") not in ("1", "true"):
        stmt = stmt.where(Recording.purged_at.is_(None))
    for key in ("contact_id", "call_id", "status", "integrity", "language", "queue", "from", "to"):
        if q.get(key):
            filters[key] = q[key]
    limit = max(1, min(MAX_LIMIT, _int_param(request, "limit", 50) or 50))
    offset = max(0, _int_param(request, "offset", 0) or 0)
    async with _ctx(request).db.session() as session:
        total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
        rows = (await session.execute(
            stmt.order_by(Recording.created_at.desc(), Recording.id.desc()).limit(limit).offset(offset))).all()
    await _audit(request, "recordings_listed", "recordings", filters=filters, count=len(rows))
    return web.json_response({"total": total, "limit": limit, "offset": offset,
                              "items": [recording_json(r, c) for r, c in rows]})


async def _load(request: web.Request) -> tuple[Recording, Contact | None]:
    rec_id = path_id(request, what="recording")
    async with _ctx(request).db.session() as session:
        row = (await session.execute(select(Recording, Contact).outerjoin(
            Contact, Recording.contact_id == Contact.id).where(Recording.id == rec_id))).first()
    if row is None:
        raise web.HTTPNotFound(text='{"error": "no such recording / 녹음이 없습니다"}', content_type="application/json")
    return row[0], row[1]


@requires(*READERS)
async def get_recording(request: web.Request) -> web.Response:
    rec, contact = await _load(request)
    await _audit(request, "recording_viewed", f"recording:{rec.id}")
    return web.json_response(recording_json(rec, contact))


@requires(*READERS)
async def get_audio(request: web.Request) -> web.StreamResponse:
    """The audio file; aiohttp's FileResponse answers Range requests with 206 partial content."""
    rec, _contact = await _load(request)
    await _audit(request, "recording_audio", f"recording:{rec.id}",
                 range=request.headers.get("Range"))
    if rec.purged_at is not None:
        raise web.HTTPGone(text='{"error": "recording purged (retention) / 보존 기간이 지나 삭제됨"}',
                           content_type="application/json")
    path = _ctx(request).settings.recordings.dir / rec.path
    if not path.is_file():
        raise web.HTTPNotFound(text='{"error": "audio file missing / 녹음 파일이 없습니다"}',
                               content_type="application/json")
    if path.name.lower().endswith(STEREO_SLN):
        # Raw interleaved slin (MixMonitor D): a browser plays it once it has a true stereo header.
        raw = await asyncio.to_thread(path.read_bytes)
        raw = raw[: len(raw) - len(raw) % 4]
        return web.Response(body=wav_header(2, 8000, len(raw)) + raw,
                            headers={"Content-Type": "audio/wav", "Cache-Control": "private, no-store"})
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": content_type, "Accept-Ranges": "bytes",
                                           "Cache-Control": "private, no-store"})


@requires(*READERS)
async def get_transcript(request: web.Request) -> web.Response:
    rec, contact = await _load(request)
    async with _ctx(request).db.session() as session:
        segments = (await session.execute(select(TranscriptSegment).where(
            TranscriptSegment.recording_id == rec.id).order_by(TranscriptSegment.start, TranscriptSegment.id)
        )).scalars().all()
    await _audit(request, "transcript_viewed", f"recording:{rec.id}")
    return web.json_response({
        "recording_id": rec.id, "contact_id": rec.contact_id, "status": rec.transcription_status,
        "error": rec.transcription_error, "language": contact.language if contact else None,
        "segments": [{"id": s.id, "speaker": s.speaker, "start": s.start, "end": s.end, "text": s.text,
                      "confidence": s.confidence} for s in segments],
    })


@requires("supervisor")
async def set_legal_hold(request: web.Request) -> web.Response:
    """PUT /api/recordings/{id}/legal-hold {"hold": true|false}"""
    rec, contact = await _load(request)
    hold = (await read_model(request, LegalHoldIn)).hold
    async with _ctx(request).db.transaction() as session:
        row = await session.get(Recording, rec.id)
        assert row is not None
        row.legal_hold = hold
    rec.legal_hold = hold
    await _audit(request, "legal_hold_set" if hold else "legal_hold_released", f"recording:{rec.id}")
    return web.json_response(recording_json(rec, contact))


@requires(*READERS)
async def search(request: web.Request) -> web.Response:
    """GET /api/search?q=...: transcript segments and notes; contact and time in the recording."""
    query = request.query.get("q", "").strip()
    if not query:
        raise json_error(400, "q: give one or more words to search for / 검색어를 입력하세요")
    limit = max(1, min(MAX_LIMIT, _int_param(request, "limit", 50) or 50))
    unmasked = request.query.get("unmasked", "") in ("1", "true")
    user = current_user(request)
    if unmasked and (user is None or user.role not in _ctx(request).settings.recordings.unmasked_roles):
        raise json_error(403, "unmasked text: your role may not see it (recordings.unmasked_roles) "
                              "/ 가리지 않은 개인정보를 볼 권한이 없습니다")
    async with _ctx(request).db.session() as session:
        try:
            hits = await search_text(session, query, limit=limit)
        except SearchError as exc:
            raise json_error(exc.status, str(exc)) from None
        seg_ids = [h.ref_id for h in hits if h.kind == "segment"]
        seg_info: dict[int, tuple[int, str, float]] = {}
        if seg_ids:
            for sid, rid, speaker, end in (await session.execute(select(
                    TranscriptSegment.id, TranscriptSegment.recording_id, TranscriptSegment.speaker,
                    TranscriptSegment.end).where(TranscriptSegment.id.in_(seg_ids)))).all():
                seg_info[sid] = (rid, speaker, end)
    items = []
    for h in hits:
        # Notes and messages are stored as typed (transcripts are masked before storing): the
        # personal data in them is masked here for everyone but a role allowed to see it.
        text = h.text if unmasked else mask_text(h.text)
        item: dict[str, Any] = {"contact_id": h.contact_id or None, "kind": h.kind, "text": text}
        if h.kind == "segment" and h.ref_id in seg_info:
            rid, speaker, end = seg_info[h.ref_id]
            item.update(segment_id=h.ref_id, recording_id=rid, speaker=speaker, start=h.start, end=end,
                        audio_url=f"/api/recordings/{rid}/audio", transcript_url=f"/api/recordings/{rid}/transcript")
        items.append(item)
    await _audit(request, "search_unmasked" if unmasked else "search", "search", q=query, count=len(items))
    return web.json_response({"q": query, "count": len(items), "items": items})


def _op(summary: str, op_id: str, params: list[dict[str, Any]] | None = None,
        responses: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "tags": ["recordings"],
                          "security": [{"session": []}], "parameters": params or [],
                          "responses": responses or {"200": {"description": "ok", "content": {
                              "application/json": {"schema": {"type": "object"}}}}}}
    op["responses"].update({"401": {"description": "sign in first"},
                            "403": {"description": "role not allowed"}})
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _q(name: str, schema: dict[str, Any], description: str = "", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
NOT_FOUND = {"404": {"description": "no such recording"}}

PATHS: dict[str, Any] = {
    "/api/recordings": {"get": _op("List and filter recordings", "listRecordings", [
        _q("contact_id", {"type": "integer"}), _q("call_id", {"type": "string"}),
        _q("status", {"type": "string", "enum": list(STATUSES)}),
        _q("integrity", {"type": "string"}), _q("language", {"type": "string"}), _q("queue", {"type": "string"}),
        _q("from", {"type": "string", "format": "date-time"}, "recorded at or after"),
        _q("to", {"type": "string", "format": "date-time"}, "recorded before"),
        _q("include_purged", {"type": "boolean"}),
        _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        _q("offset", {"type": "integer", "minimum": 0})],
        {"200": {"description": "a page of recordings", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"total": {"type": "integer"},
                                                          "items": {"type": "array"}}}}}},
         "400": {"description": "bad filter"}})},
    "/api/recordings/{id}": {"get": _op("One recording", "getRecording", [ID],
                                        {"200": {"description": "the recording"}, **NOT_FOUND})},
    "/api/recordings/{id}/audio": {"get": _op(
        "Stream the audio (supports Range: bytes=...)", "getRecordingAudio",
        [ID, {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}}],
        {"200": {"description": "the whole file", "content": {"audio/wav": {}}},
         "206": {"description": "the requested byte range", "content": {"audio/wav": {}}},
         "410": {"description": "purged by retention"}, **NOT_FOUND})},
    "/api/recordings/{id}/transcript": {"get": _op("Transcript segments with speaker and timings",
                                                   "getRecordingTranscript", [ID],
                                                   {"200": {"description": "segments"}, **NOT_FOUND})},
    "/api/recordings/{id}/legal-hold": {"put": _op(
        "Put on or release legal hold (supervisor)", "setRecordingLegalHold", [ID],
        {"200": {"description": "the recording"}, "400": {"description": "bad body"}, **NOT_FOUND},
        body={"type": "object", "required": ["hold"], "properties": {"hold": {"type": "boolean"}}})},
    "/api/search": {"get": _op("Search transcripts and notes (Korean works)", "search",
                               [_q("q", {"type": "string", "minLength": 1}, "words, all must match", True),
                                _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
                                _q("unmasked", {"type": "string", "enum": ["0", "1"]},
                                   "1: personal data not masked (roles in recordings.unmasked_roles; audited)")],
                               {"200": {"description": "hits with contact_id and start seconds"},
                                "400": {"description": "empty query"},
                                "403": {"description": "unmasked asked by a role that may not see it"}})},
}


def setup(app: web.Application, ctx: AppContext) -> None:
    from ivr.web.openapi import add_paths

    app.router.add_get("/api/recordings", list_recordings)
    app.router.add_get("/api/recordings/{id}", get_recording)
    app.router.add_get("/api/recordings/{id}/audio", get_audio)
    app.router.add_get("/api/recordings/{id}/transcript", get_transcript)
    app.router.add_put("/api/recordings/{id}/legal-hold", set_legal_hold)
    app.router.add_get("/api/search", search)
    add_paths(app, PATHS)
