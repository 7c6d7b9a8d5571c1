"""QA pages and API: reviewers draw random contacts per agent for a period, score them on a
scorecard defined as data (nothing pre-set), compare with a second reviewer (calibration: the
disagreement per criterion), and export the evaluations; agents read and acknowledge theirs.

A reviewer sees other reviewers' scores of a contact only after scoring it (blind calibration);
supervisors see all.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ivr import sitetime
from ivr.console.http import audit_request, int_match, iso, username
from ivr.console.render import ctx_of, render
from ivr.console.reports import parse_period, period_of
from ivr.db.models import Agent, Contact
from ivr.quality.models import QaEvaluation, QaSample
from ivr.quality.sampling import calibration, draw
from ivr.quality.scorecards import Scorecard, Scorecards, load_scorecards
from ivr.web.auth import current_user, requires
from ivr.web.bodies import Body, read_model
from ivr.web.errors import json_error
from ivr.yamlfile import DataError

REVIEWERS = ("reviewer", "supervisor")
MAX_PER_AGENT = 50


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text without NUL characters")
    return text


Comment = Annotated[str, Field(max_length=5000), AfterValidator(_no_nul)]


def scorecards_of(request: web.Request) -> Scorecards:
    try:
        return load_scorecards(ctx_of(request).settings.data_dir)
    except DataError as exc:
        raise json_error(422, f"scorecards.yaml: {exc.problems[0]}") from None


def scorecard_of(request: web.Request, name: object) -> Scorecard:
    cards = scorecards_of(request).scorecards
    if not isinstance(name, str) or name not in cards:
        raise json_error(400, f"scorecard: one of {', '.join(cards)}")
    return cards[name]


def sees_all(request: web.Request) -> bool:
    user = current_user(request)
    return user is not None and user.role in ("supervisor", "admin")


@requires("reviewer", "supervisor", "agent")
async def quality_page(request: web.Request) -> web.Response:
    user = current_user(request)
    assert user is not None
    # The period's default (this month so far) is the site's date, not the browser's: a reviewer
    # in KST just after midnight is on the 8th while a UTC browser still says the 7th.
    today = sitetime.local().date()
    return render(request, "quality.html", scorecards=scorecards_of(request).scorecards,
                  reviewer=user.role in ("reviewer", "supervisor", "admin"), max_per_agent=MAX_PER_AGENT,
                  default_from=today.replace(day=1).isoformat(), default_to=today.isoformat())


@requires("reviewer", "supervisor", "agent")
async def get_scorecards(request: web.Request) -> web.Response:
    """GET /api/console/qa/scorecards: the scorecards as data."""
    return web.json_response({k: v.model_dump() for k, v in scorecards_of(request).scorecards.items()})


class DrawIn(Body):
    first: str = Field("", alias="from")  # YYYY-MM-DD, the site's day
    last: str = Field("", alias="to")
    per_agent: int = Field(ge=1, le=MAX_PER_AGENT)
    scorecard: str  # one of the site's scorecards (checked against them)


class ScoreIn(Body):
    scores: dict[str, int]  # criterion -> 0..max (checked against the sample's scorecard)
    comment: Comment = ""


class AckIn(Body):
    comment: Annotated[str, Field(max_length=2000), AfterValidator(_no_nul)] = ""


@requires(*REVIEWERS)
async def draw_samples(request: web.Request) -> web.Response:
    """POST /api/console/qa/samples {"from", "to", "per_agent", "scorecard"}: a random draw per agent."""
    body = await read_model(request, DrawIn)
    card = scorecard_of(request, body.scorecard)
    per_agent = body.per_agent
    start, end, _ = parse_period(body.first, body.last, ctx_of(request).settings.timezone)
    async with ctx_of(request).db.transaction() as session:
        samples = await draw(session, start, end, per_agent, body.scorecard, card, username(request))
        ids = [s.id for s in samples]
    await audit_request(request, "qa_sampled", "qa", count=len(ids), per_agent=per_agent,
                        scorecard=body.scorecard, start=start.isoformat(), end=end.isoformat())
    return web.json_response({"drawn": len(ids), "ids": ids}, status=201)


async def _sample_rows(request: web.Request, where: Any = None, limit: int = 200) -> list[dict[str, Any]]:
    me = username(request)
    async with ctx_of(request).db.session() as session:
        stmt = (select(QaSample, Contact, Agent).join(Contact, Contact.id == QaSample.contact_id)
                .join(Agent, Agent.id == QaSample.agent_id))
        if where is not None:
            stmt = stmt.where(where)
        rows = (await session.execute(stmt.order_by(QaSample.id.desc()).limit(limit))).all()
        ids = [s.id for s, _c, _a in rows]
        reviewers: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for sample_id, reviewer in await session.execute(
                    select(QaEvaluation.sample_id, QaEvaluation.reviewer).where(QaEvaluation.sample_id.in_(ids))
                    .order_by(QaEvaluation.id)):
                reviewers[sample_id].append(reviewer)
    return [{"id": s.id, "scorecard": s.scorecard, "contact_id": c.id, "channel": str(c.channel),
             "queue": c.queue, "started_at": iso(c.started_at), "agent": a.username, "agent_name": a.display_name,
             "reviewers": reviewers[s.id], "scored_by_me": me in reviewers[s.id]} for s, c, a in rows]


@requires(*REVIEWERS)
async def list_samples(request: web.Request) -> web.Response:
    """GET /api/console/qa/samples: the latest drawn contacts and who has scored each."""
    return web.json_response({"items": await _sample_rows(request)})


@requires(*REVIEWERS)
async def get_sample(request: web.Request) -> web.Response:
    """GET /api/console/qa/samples/{id}: the sample, the scorecard, and the evaluations the caller may see
    with their calibration (others' only once the caller has scored, unless a supervisor)."""
    sample_id = int_match(request)
    items = await _sample_rows(request, QaSample.id == sample_id, 1)
    if not items:
        raise json_error(404, "no such sample / 표본이 없습니다")
    sample = items[0]
    card = scorecard_of(request, sample["scorecard"])
    async with ctx_of(request).db.session() as session:
        evaluations = list((await session.execute(select(QaEvaluation).where(QaEvaluation.sample_id == sample_id)
                                                  .order_by(QaEvaluation.id))).scalars())
    if not (sample["scored_by_me"] or sees_all(request)):
        evaluations = []  # blind until the caller has scored
    return web.json_response({**sample, "card": card.model_dump(),
                              "evaluations": [evaluation_json(e) for e in evaluations],
                              "calibration": calibration(card, evaluations) if evaluations else None})


def evaluation_json(e: QaEvaluation) -> dict[str, Any]:
    return {"id": e.id, "sample_id": e.sample_id, "reviewer": e.reviewer, "scores": e.scores, "total": e.total,
            "comment": e.comment, "created_at": iso(e.created_at), "acknowledged_at": iso(e.acknowledged_at),
            "agent_comment": e.agent_comment}


@requires(*REVIEWERS)
async def score_sample(request: web.Request) -> web.Response:
    """POST /api/console/qa/samples/{id}/evaluations {"scores": {criterion: 0..max}, "comment"}: once per reviewer."""
    sample_id = int_match(request)
    body = await read_model(request, ScoreIn)
    comment = body.comment
    ctx = ctx_of(request)
    async with ctx.db.session() as session:
        sample = await session.get(QaSample, sample_id)
    if sample is None:
        raise json_error(404, "no such sample / 표본이 없습니다")
    card = scorecard_of(request, sample.scorecard)
    try:
        scores, total = card.score(body.scores)
    except ValueError as exc:
        raise json_error(400, str(exc)) from None
    try:
        async with ctx.db.transaction() as session:
            evaluation = QaEvaluation(sample_id=sample_id, reviewer=username(request), scores=scores, total=total,
                                      comment=comment, agent_comment="")
            session.add(evaluation)
            await session.flush()
            result = evaluation_json(evaluation)
    except IntegrityError:
        raise json_error(409, "you have scored this contact already / 이미 평가한 문의입니다") from None
    await audit_request(request, "qa_scored", f"qa_sample:{sample_id}", total=total)
    return web.json_response(result, status=201)


@requires("agent", "supervisor")
async def my_evaluations(request: web.Request) -> web.Response:
    """GET /api/console/qa/mine: evaluations of the contacts I handled."""
    async with ctx_of(request).db.session() as session:
        rows = (await session.execute(
            select(QaEvaluation, QaSample).join(QaSample, QaSample.id == QaEvaluation.sample_id)
            .join(Agent, Agent.id == QaSample.agent_id).where(Agent.username == username(request))
            .order_by(QaEvaluation.id.desc()).limit(200))).all()
    return web.json_response({"items": [{**evaluation_json(e), "contact_id": s.contact_id, "scorecard": s.scorecard}
                                        for e, s in rows]})


@requires("agent", "supervisor")
async def acknowledge(request: web.Request) -> web.Response:
    """POST /api/console/qa/evaluations/{id}/ack {"comment"?}: the evaluated agent has read it."""
    evaluation_id = int_match(request)
    comment = (await read_model(request, AckIn)).comment
    async with ctx_of(request).db.transaction() as session:
        row = (await session.execute(
            select(QaEvaluation, Agent.username).join(QaSample, QaSample.id == QaEvaluation.sample_id)
            .join(Agent, Agent.id == QaSample.agent_id).where(QaEvaluation.id == evaluation_id))).first()
        if row is None:
            raise json_error(404, "no such evaluation / 평가가 없습니다")
        evaluation, agent = row
        if agent != username(request):
            raise json_error(403, "only the evaluated agent acknowledges / 평가받은 상담원만 확인할 수 있습니다")
        if evaluation.acknowledged_at is not None:
            raise json_error(409, "acknowledged already / 이미 확인했습니다")
        evaluation.acknowledged_at, evaluation.agent_comment = datetime.now(UTC), comment
        result = evaluation_json(evaluation)
    await audit_request(request, "qa_acknowledged", f"qa_evaluation:{evaluation_id}")
    return web.json_response(result)


@requires(*REVIEWERS)
async def export_evaluations(request: web.Request) -> web.Response:
    """GET /api/console/qa/export.csv?from&to: one row per evaluation of contacts drawn for that period."""
    start, end, name = period_of(request)
    cards = scorecards_of(request).scorecards
    keys = list(dict.fromkeys(c.key for card in cards.values() for c in card.criteria))
    async with ctx_of(request).db.session() as session:
        rows = (await session.execute(
            select(QaEvaluation, QaSample, Contact, Agent.username)
            .join(QaSample, QaSample.id == QaEvaluation.sample_id).join(Contact, Contact.id == QaSample.contact_id)
            .join(Agent, Agent.id == QaSample.agent_id)
            .where(Contact.started_at >= start, Contact.started_at < end)
            .order_by(QaSample.id, QaEvaluation.id))).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["sample_id", "contact_id", "started_at", "channel", "queue", "agent", "scorecard", "reviewer",
                     *keys, "total", "comment", "scored_at", "acknowledged_at"])
    for e, s, c, agent in rows:
        comment = e.comment if e.comment[:1] not in ("=", "+", "-", "@") else "'" + e.comment
        writer.writerow([s.id, c.id, iso(c.started_at), str(c.channel), c.queue or "", agent, s.scorecard, e.reviewer,
                         *(e.scores.get(k, "") for k in keys), e.total, comment, iso(e.created_at),
                         iso(e.acknowledged_at) or ""])
    await audit_request(request, "qa_exported", "qa", count=len(rows))
    return web.Response(body=("\ufeff" + out.getvalue()).encode(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="qa_{name}.csv"'})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/quality", quality_page)
    r.add_get("/api/console/qa/scorecards", get_scorecards)
    r.add_get("/api/console/qa/samples", list_samples)
    r.add_post("/api/console/qa/samples", draw_samples)
    r.add_get("/api/console/qa/samples/{id}", get_sample)
    r.add_post("/api/console/qa/samples/{id}/evaluations", score_sample)
    r.add_get("/api/console/qa/mine", my_evaluations)
    r.add_post("/api/console/qa/evaluations/{id}/ack", acknowledge)
    r.add_get("/api/console/qa/export.csv", export_evaluations)
