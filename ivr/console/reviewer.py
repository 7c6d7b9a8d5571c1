"""Reviewer pages: find recordings (date, queue, agent, category, satisfaction, transcript words),
play one with its waveform and transcript, and score the call (quality review).

Audio and transcript come from the recordings API (``/api/recordings/{id}/audio|transcript``,
which audits every access); this module adds the richer search, waveform peaks and reviews.
"""

from __future__ import annotations

import asyncio
import warnings
from datetime import UTC, datetime
from typing import Annotated

from aiohttp import web
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ivr.console.http import audit_request, int_match, iso, username
from ivr.console.models import QualityReview
from ivr.console.render import ctx_of, render
from ivr.db.models import Agent, Category, Contact, Recording
from ivr.search import SearchError, search_text
from ivr.speech.audio import STEREO_SLN, AudioError, decode, mixdown
from ivr.speech.recognizer import STEREO_SPEAKERS
from ivr.web.auth import requires
from ivr.web.bodies import Body, read_model
from ivr.web.errors import json_error

with warnings.catch_warnings():
    # audioop is stdlib up to 3.12 (deprecated) and the audioop-lts package from 3.13.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

READERS = ("reviewer", "supervisor")
Score = Annotated[int, Field(ge=1, le=5)]


class ReviewScores(Body):
    greeting: Score
    accuracy: Score
    empathy: Score
    resolution: Score


class ReviewIn(Body):
    scores: ReviewScores
    comment: str = Field("", max_length=5000)


CRITERIA = tuple(ReviewScores.model_fields)  # greeting, accuracy, empathy, resolution
PEAK_RATE = 8000


def _date(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise json_error(400, f"{name}: expected a date such as 2026-11-25") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@requires(*READERS)
async def reviewer_page(request: web.Request) -> web.Response:
    async with ctx_of(request).db.session() as session:
        agents = list((await session.execute(select(Agent).order_by(Agent.username))).scalars())
        categories = list((await session.execute(select(Category).order_by(Category.code))).scalars())
        queues = [q for (q,) in await session.execute(
            select(Contact.queue).where(Contact.queue.is_not(None)).distinct().order_by(Contact.queue))]
    return render(request, "reviewer.html", agents=agents, categories=categories, queues=queues)


@requires(*READERS)
async def find_recordings(request: web.Request) -> web.Response:
    """GET /api/console/recordings?from&to&queue&agent&category&satisfaction&q (q: transcript/notes words)."""
    q = request.query
    stmt = (select(Recording, Contact).outerjoin(Contact, Recording.contact_id == Contact.id)
            .where(Recording.purged_at.is_(None)))
    if q.get("from"):
        stmt = stmt.where(Recording.created_at >= _date(q["from"], "from"))
    if q.get("to"):
        to = _date(q["to"], "to")
        if len(q["to"]) == 10:  # a plain date includes that whole day
            to = to.replace(hour=23, minute=59, second=59)
        stmt = stmt.where(Recording.created_at <= to)
    if q.get("queue"):
        stmt = stmt.where(Contact.queue == q["queue"])
    if q.get("agent"):
        stmt = stmt.where(Contact.agent_id.in_(select(Agent.id).where(Agent.username == q["agent"])))
    if q.get("category"):
        stmt = stmt.where(Contact.category_id.in_(select(Category.id).where(Category.code == q["category"])))
    if q.get("satisfaction"):
        try:
            score = int(q["satisfaction"])
            if not 1 <= score <= 5:  # also keeps a 30-digit number away from the database
                raise ValueError
        except ValueError:
            raise json_error(400, "satisfaction: a number 1-5") from None
        stmt = stmt.where(Contact.satisfaction == score)
    words = q.get("q", "").strip()
    async with ctx_of(request).db.session() as session:
        if words:
            try:
                hits = await search_text(session, words, limit=500)
            except SearchError as exc:
                raise json_error(exc.status, str(exc)) from None
            ids = {h.contact_id for h in hits if h.contact_id}
            stmt = stmt.where(Recording.contact_id.in_(ids or {-1}))
        rows = (await session.execute(stmt.order_by(Recording.created_at.desc(), Recording.id.desc()).limit(200))).all()
        agent_ids = {c.agent_id for _r, c in rows if c is not None and c.agent_id}
        agents = {a.id: a.username for a in (await session.execute(
            select(Agent).where(Agent.id.in_(agent_ids)))).scalars()} if agent_ids else {}
        cat_ids = {c.category_id for _r, c in rows if c is not None and c.category_id}
        cats = {c.id: c for c in (await session.execute(
            select(Category).where(Category.id.in_(cat_ids)))).scalars()} if cat_ids else {}
    await audit_request(request, "recordings_searched", "recordings",
                        filters={k: v for k, v in q.items() if v}, count=len(rows))
    items = []
    for rec, contact in rows:
        cat = cats.get(contact.category_id) if contact and contact.category_id else None
        items.append({
            "id": rec.id, "contact_id": rec.contact_id, "created_at": iso(rec.created_at),
            "duration_seconds": rec.duration_seconds, "transcription_status": rec.transcription_status,
            "queue": contact.queue if contact else None, "language": contact.language if contact else None,
            "agent": agents.get(contact.agent_id) if contact and contact.agent_id else None,
            "category": {"code": cat.code, "ko": cat.name_ko, "en": cat.name_en} if cat else None,
            "satisfaction": contact.satisfaction if contact else None,
        })
    return web.json_response({"count": len(items), "items": items})


@requires(*READERS)
async def player_page(request: web.Request) -> web.Response:
    rec_id = int_match(request)
    async with ctx_of(request).db.session() as session:
        rec = (await session.execute(select(Recording).options(selectinload(Recording.contact))
                                     .where(Recording.id == rec_id))).scalar_one_or_none()
        reviews = list((await session.execute(select(QualityReview).where(QualityReview.recording_id == rec_id)
                                              .order_by(QualityReview.id.desc()))).scalars())
    if rec is None:
        raise web.HTTPNotFound(text="no such recording / 녹음이 없습니다")
    await audit_request(request, "recording_opened", f"recording:{rec_id}")
    return render(request, "player.html", rec=rec, contact=rec.contact, reviews=reviews, criteria=CRITERIA)


async def _decode(path: str) -> bytes:
    """Any audio file as 8 kHz mono signed 16-bit samples (ffmpeg), for the waveform."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "s16le", "-ac", "1", "-ar", str(PEAK_RATE), "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise json_error(422, f"cannot decode the audio: {err.decode(errors='replace')[:200]}")
    return out


@requires(*READERS)
async def peaks(request: web.Request) -> web.Response:
    """GET /api/console/recordings/{id}/peaks?n=600: n peak levels 0..1 for drawing the waveform."""
    rec_id = int_match(request)
    try:
        n = max(10, min(4000, int(request.query.get("n", "600"))))
    except ValueError:
        raise json_error(400, "n: a whole number") from None
    ctx = ctx_of(request)
    async with ctx.db.session() as session:
        rec = await session.get(Recording, rec_id)
    if rec is None:
        raise json_error(404, "no such recording / 녹음이 없습니다")
    if rec.purged_at is not None:
        raise web.HTTPGone(text='{"error": "recording purged (retention)"}', content_type="application/json")
    root = ctx.settings.recordings.dir.resolve()
    path = (root / rec.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise json_error(404, "audio file missing / 녹음 파일이 없습니다")
    await audit_request(request, "recording_peaks", f"recording:{rec_id}")
    if path.name.lower().endswith(STEREO_SLN):  # caller and agent apart: one lane each
        try:
            audio = await asyncio.to_thread(decode, path)
        except AudioError as exc:
            raise json_error(422, f"cannot decode the audio: {exc}") from None
        lanes = {speaker: await asyncio.to_thread(peak_levels, pcm, n)
                 for speaker, pcm in zip(STEREO_SPEAKERS, audio.channels, strict=True)}
        mixed = await asyncio.to_thread(peak_levels, mixdown(audio.channels), n)
        return web.json_response({"recording_id": rec_id, "duration": audio.duration, "peaks": mixed,
                                  "lanes": lanes})
    raw = await _decode(str(path))
    levels = await asyncio.to_thread(peak_levels, raw, n)
    return web.json_response({"recording_id": rec_id, "duration": len(raw) / 2 / PEAK_RATE, "peaks": levels})


def peak_levels(raw: bytes, n: int) -> list[float]:
    """The loudest sample of each of ``n`` equal slices of 16-bit audio, 0..1 (audioop: C speed)."""
    total = len(raw) // 2
    if not total:
        return []
    step = max(1, total // n) * 2
    return [round(audioop.max(raw[i:i + step], 2) / 32768, 4) for i in range(0, total * 2, step)][:n]


def _score(given: ReviewScores) -> tuple[dict[str, int], int]:
    scores = given.model_dump()
    return scores, round(sum(scores.values()) * 100 / (5 * len(CRITERIA)))


@requires(*READERS)
async def save_review(request: web.Request) -> web.Response:
    """POST /api/console/recordings/{id}/reviews {"scores": {...1-5}, "comment"}."""
    rec_id = int_match(request)
    body = await read_model(request, ReviewIn)
    scores, total = _score(body.scores)
    comment = body.comment
    async with ctx_of(request).db.transaction() as session:
        rec = await session.get(Recording, rec_id)
        if rec is None:
            raise json_error(404, "no such recording / 녹음이 없습니다")
        review = QualityReview(recording_id=rec_id, contact_id=rec.contact_id, reviewer=username(request),
                               scores=scores, total=total, comment=comment)
        session.add(review)
        await session.flush()
        review_id = review.id
    await audit_request(request, "quality_review", f"recording:{rec_id}", total=total)
    return web.json_response({"id": review_id, "total": total, "scores": scores}, status=201)


@requires(*READERS)
async def list_reviews(request: web.Request) -> web.Response:
    rec_id = int_match(request)
    async with ctx_of(request).db.session() as session:
        rows = list((await session.execute(select(QualityReview).where(QualityReview.recording_id == rec_id)
                                           .order_by(QualityReview.id.desc()))).scalars())
        average = (await session.execute(select(func.avg(QualityReview.total))
                                         .where(QualityReview.recording_id == rec_id))).scalar_one()
    return web.json_response({"average": float(average) if average is not None else None, "items": [
        {"id": r.id, "reviewer": r.reviewer, "scores": r.scores, "total": r.total, "comment": r.comment,
         "created_at": iso(r.created_at)} for r in rows]})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/reviewer", reviewer_page)
    r.add_get("/console/reviewer/recordings/{id}", player_page)
    r.add_get("/api/console/recordings", find_recordings)
    r.add_get("/api/console/recordings/{id}/peaks", peaks)
    r.add_get("/api/console/recordings/{id}/reviews", list_reviews)
    r.add_post("/api/console/recordings/{id}/reviews", save_review)
