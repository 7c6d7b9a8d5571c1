"""Every JSON body of the console, the browser-call pages and the sign-in goes through one
pydantic check (``ivr.web.bodies``): a body that is not JSON, lacks a field or has the wrong
type answers the same 400 document on each route, and nothing is written."""

from __future__ import annotations

from typing import Any

import aiohttp
from sqlalchemy import func, select

from ivr.console.models import ConfigChange, QualityReview
from ivr.db.models import AuditLog, Contact, User
from ivr.knowledge.models import Article
from ivr.quality.models import QaEvaluation, QaSample
from ivr.web.bodies import SCHEMA_MISMATCH
from tests.support.console import Console

# (signed-in user or None, path, a malformed body, the field the error must name)
MALFORMED: list[tuple[str | None, str, str | dict[str, Any] | list[Any], str]] = [
    ("kim.minji", "/api/console/language", "not json", "(body)"),
    ("kim.minji", "/api/console/language", {"language": "ru"}, "language"),
    ("kim.minji", "/api/console/language", [], "(body)"),
    ("super1", "/api/console/calls/supervise", {"mode": "listen"}, "call"),
    ("super1", "/api/console/calls/supervise", {"call": 1700000001, "mode": "listen"}, "call"),
    ("super1", "/api/console/calls/supervise", {"call": "1700000001.5", "mode": "shout"}, "mode"),
    ("review1", "/api/console/recordings/{recording}/reviews",
     {"scores": {"greeting": 5, "accuracy": "5", "empathy": 5, "resolution": 5}}, "scores.accuracy"),
    ("review1", "/api/console/recordings/{recording}/reviews",
     {"scores": {"greeting": 5, "accuracy": 5, "empathy": True, "resolution": 5}}, "scores.empathy"),
    ("review1", "/api/console/recordings/{recording}/reviews",
     {"scores": {"greeting": 5, "accuracy": 5, "empathy": 5}, "comment": "ok"}, "scores.resolution"),
    ("review1", "/api/console/qa/samples", {"per_agent": "2", "scorecard": "voice"}, "per_agent"),
    ("review1", "/api/console/qa/samples", {"per_agent": 2}, "scorecard"),
    ("kim.minji", "/api/console/contacts/{current}/video/finish", {"sha256": "abc"}, "sha256"),
    ("kim.minji", "/api/console/contacts/{current}/video/finish", {"sha256": "a" * 64, "seconds": "12"}, "seconds"),
    ("kim.minji", "/api/console/agent/state", {"action": "nap"}, "action"),
    ("kim.minji", "/api/console/agent/state", {"action": "pause", "reason": 7}, "reason"),
    ("kim.minji", "/api/console/contacts/{current}/record", {"notes": ["a"], "resolution": "answered"}, "notes"),
    ("kim.minji", "/api/console/contacts/{current}/record", {"notes": "", "resolution": "maybe"}, "resolution"),
    ("kim.minji", "/api/console/kb/articles/1/use", {"contact_id": "12"}, "contact_id"),
    ("super1", "/api/console/kb/articles", {"key": "bus-stop", "texts": {"ko": {"title": "t"}}}, "texts.ko.body"),
    ("super1", "/api/console/kb/articles", "{\"key\": ", "(body)"),
    ("super1", "/api/console/admin/validate?file=agents", {"text": 5}, "text"),
    ("super1", "/api/console/admin/file?file=agents", {"sha256": "0" * 64, "comment": "x"}, "text"),
    ("super1", "/api/console/admin/proficiencies", {"skills": {"kim.minji": {"Bad Queue": 3}}}, "skills.kim.minji.Bad Queue.[key]"),
    ("super1", "/api/console/admin/proficiencies", {"skills": {"kim.minji": {"general-ko": "3"}}}, "skills.kim.minji.general-ko"),
    (None, "/api/login", {"username": "kim.minji"}, "password"),
    (None, "/api/login", {"username": 7, "password": "x"}, "username"),
    (None, "/api/webcall/survey", {"score": 6, "username": "u", "password": "p"}, "score"),
    (None, "/api/webcall/survey", {"score": 4.5}, "score"),
    (None, "/api/webcall/credentials", {"kind": "fax", "token": "t"}, "kind"),
]


async def _written(console: Console) -> tuple[int, ...]:
    async with console.ctx.db.session() as session:
        counts = [await session.scalar(select(func.count()).select_from(table))
                  for table in (AuditLog, QualityReview, QaSample, QaEvaluation, ConfigChange, Article)]
        languages = tuple((await session.execute(select(User.language).order_by(User.username))).scalars())
        satisfaction = await session.scalar(select(func.count()).where(Contact.satisfaction.is_not(None)))
        records = tuple((await session.execute(select(Contact.notes, Contact.resolution).order_by(Contact.id))).all())
    agents_yaml = (console.ctx.settings.queues_dir / "agents.yaml").read_text(encoding="utf-8")
    return (*[int(c or 0) for c in counts], hash(languages), int(satisfaction or 0), hash(records), hash(agents_yaml))


async def test_a_malformed_body_gets_the_same_400_everywhere_and_nothing_is_written(
        console: Console, login: Any) -> None:
    console.ctx.settings.webrtc.enabled = True  # the credentials route answers (else 404 first)
    users = {name: await login(name) for name in ("kim.minji", "super1", "review1")}
    before = await _written(console)
    async with aiohttp.ClientSession() as anonymous:
        for who, path, body, field in MALFORMED:
            path = path.format(**console.ids)
            kw: dict[str, Any] = ({"data": body, "headers": {"Content-Type": "application/json"}}
                                  if isinstance(body, str) else {"json": body})
            if who is None:
                async with anonymous.post(console.url + path, **kw) as r:
                    status, answer = r.status, await r.json()
            else:
                status, answer = await users[who].call("POST", path, **kw)
            assert status == 400, (path, body, status, answer)
            assert answer["error"].startswith(f"{SCHEMA_MISMATCH}: {field}: "), (path, body, answer)
            assert "요청 본문이 형식에 맞지 않습니다" in answer["error"]
            assert any(d["field"] == field and d["problem"] for d in answer["details"]), (path, answer)
            assert set(answer) == {"error", "details"}, answer
    assert await _written(console) == before  # no audit row, review, sample, file, record, article, language or score


async def test_a_well_formed_body_still_passes(console: Console, login: Any) -> None:
    """The same routes take a right body (the check refuses only what is wrong)."""
    agent = await login("kim.minji")
    status, answer = await agent.call("POST", "/api/console/language", json={"language": "en"})
    assert (status, answer) == (200, {"language": "en"})
    reviewer = await login("review1")
    status, answer = await reviewer.call(
        "POST", f"/api/console/recordings/{console.ids['recording']}/reviews",
        json={"scores": {"greeting": 5, "accuracy": 4, "empathy": 5, "resolution": 4}, "comment": "좋음"})
    assert status in (200, 201), answer
    async with console.ctx.db.session() as session:
        review = (await session.execute(select(QualityReview))).scalar_one()
    assert review.scores == {"greeting": 5, "accuracy": 4, "empathy": 5, "resolution": 4} and review.total == 90


async def test_a_prompt_upload_checks_its_fields_the_same_way(console: Console, login: Any) -> None:
    """The multipart upload's text fields go through the same check: the same 400 naming the
    field, and no sound file or history row."""
    admin = await login("super1")
    before = await _written(console)
    for fields, field in (({"name": "../evil", "language": "ko"}, "name"), ({"name": "welcome"}, "language")):
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("file", b"RIFF", filename="x.wav", content_type="audio/wav")
        status, answer = await admin.call("POST", "/api/console/admin/prompts", data=form)
        assert status == 400 and answer["error"].startswith(f"{SCHEMA_MISMATCH}: {field}: "), answer
        assert [d["field"] for d in answer["details"]] == [field], answer
    assert await _written(console) == before
    assert not list(console.ctx.settings.asterisk.sounds_dir.rglob("*.wav"))
