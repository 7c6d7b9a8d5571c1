"""QA on SQLite and PostgreSQL: scorecards as data (checked, with file and line), random samples
per agent and period (never a contact twice), scores with nothing pre-set, blind calibration of
two reviewers, the agent's acknowledgement, the CSV export, and who may do what; draws that are
really random, per agent and within the period."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ivr.db import Database
from ivr.db.models import Agent, Channel, Contact
from ivr.quality.sampling import draw
from ivr.quality.scorecards import load_scorecards
from ivr.yamlfile import DataError
from tests.support.console import Console


def test_scorecards_are_data(tmp_path: Path) -> None:
    cards = load_scorecards(tmp_path)  # none in the data folder: the package's
    voice = cards.scorecards["voice"]
    assert voice.score({"greeting": 5, "accuracy": 5, "empathy": 5, "resolution": 5}) == (
        {"greeting": 5, "accuracy": 5, "empathy": 5, "resolution": 5}, 100.0)
    # weights: accuracy and resolution count twice -> (0 + 2*5/5 + 0 + 2*0/5) / 6 * 100
    assert voice.score({"greeting": 0, "accuracy": 5, "empathy": 0, "resolution": 0})[1] == 33.3
    for wrong, field in (({"greeting": 5}, "accuracy"), ({"greeting": 6, "accuracy": 1, "empathy": 1, "resolution": 1}, "greeting"),
                         ({"greeting": True, "accuracy": 1, "empathy": 1, "resolution": 1}, "greeting"),
                         ({"greeting": 1, "accuracy": 1, "empathy": 1, "resolution": 1, "speed": 1}, "speed")):
        with pytest.raises(ValueError, match=field):
            voice.score(wrong)
    (tmp_path / "scorecards.yaml").write_text("scorecards:\n  mine:\n    name: {ko: 내것, en: Mine}\n"
                                              "    criteria:\n      - key: x\n        name: {ko: 가, en: A}\n"
                                              "        max: 11\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"scorecards.yaml:7: scorecards.mine.criteria.0.max"):
        load_scorecards(tmp_path)


def period(console: Console) -> dict[str, str]:
    today = datetime.now(ZoneInfo(console.ctx.settings.timezone)).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today)}


async def test_sampling_calibration_acknowledgement(console: Console, login: Any) -> None:
    reviewer, sup, agent = await login("review1"), await login("super1"), await login("kim.minji")
    status, _ = await agent.call("POST", "/api/console/qa/samples", json={**period(console), "per_agent": 1,
                                                                          "scorecard": "voice"})
    assert status == 403
    for wrong, field in (({"per_agent": 0, "scorecard": "voice"}, "per_agent"),
                         ({"per_agent": 1, "scorecard": "nope"}, "scorecard"),
                         ({"per_agent": 1, "scorecard": "voice", "from": "x"}, "from")):
        status, body = await reviewer.call("POST", "/api/console/qa/samples", json={**period(console), **wrong})
        assert status == 400 and field in body["error"], body
    status, body = await reviewer.call("POST", "/api/console/qa/samples", json={**period(console), "per_agent": 5,
                                                                                "scorecard": "voice"})
    assert status == 201 and body["drawn"] == 2  # the two agents' voice contacts; the earlier one has no agent
    status, body = await reviewer.call("POST", "/api/console/qa/samples", json={**period(console), "per_agent": 5,
                                                                                "scorecard": "voice"})
    assert body["drawn"] == 0  # never a contact twice
    status, body = await reviewer.call("POST", "/api/console/qa/samples", json={**period(console), "per_agent": 5,
                                                                                "scorecard": "text"})
    assert body["drawn"] == 0  # the SMS contact has no agent; voice calls are not text contacts
    status, body = await reviewer.call("GET", "/api/console/qa/samples")
    sample = next(s for s in body["items"] if s["agent"] == "kim.minji")
    assert sample["contact_id"] == console.ids["current"] and sample["reviewers"] == []

    status, body = await reviewer.call("POST", f"/api/console/qa/samples/{sample['id']}/evaluations",
                                       json={"scores": {"greeting": 4}})
    assert status == 400 and "accuracy" in body["error"]  # every criterion chosen, none pre-set
    scores = {"greeting": 4, "accuracy": 5, "empathy": 3, "resolution": 5}
    status, body = await reviewer.call("POST", f"/api/console/qa/samples/{sample['id']}/evaluations",
                                       json={"scores": scores, "comment": "=잘함"})
    assert status == 201
    status, body = await reviewer.call("POST", f"/api/console/qa/samples/{sample['id']}/evaluations",
                                       json={"scores": scores})
    assert status == 409
    # A second reviewer is blind until they have scored too.
    status, body = await sup.call("GET", f"/api/console/qa/samples/{sample['id']}")
    assert len(body["evaluations"]) == 1  # supervisors see all
    status, body = await sup.call("POST", f"/api/console/qa/samples/{sample['id']}/evaluations",
                                  json={"scores": {"greeting": 2, "accuracy": 5, "empathy": 3, "resolution": 1}})
    assert status == 201
    status, body = await reviewer.call("GET", f"/api/console/qa/samples/{sample['id']}")
    cal = {c["key"]: c for c in body["calibration"]["criteria"]}
    assert cal["greeting"]["scores"] == {"review1": 4, "super1": 2} and cal["greeting"]["spread"] == 2
    assert cal["accuracy"]["spread"] == 0 and cal["resolution"]["spread"] == 4
    assert body["calibration"]["total"]["spread"] == round(body["calibration"]["total"]["scores"]["review1"]
                                                           - body["calibration"]["total"]["scores"]["super1"], 1)

    # The agent reads and acknowledges; nobody else may, and only once.
    status, body = await agent.call("GET", "/api/console/qa/mine")
    mine = body["items"]
    assert {e["reviewer"] for e in mine} == {"review1", "super1"} and all(e["acknowledged_at"] is None for e in mine)
    status, _ = await sup.call("POST", f"/api/console/qa/evaluations/{mine[0]['id']}/ack", json={})
    assert status == 403
    status, body = await agent.call("POST", f"/api/console/qa/evaluations/{mine[0]['id']}/ack",
                                    json={"comment": "확인했습니다"})
    assert status == 200 and body["acknowledged_at"] and body["agent_comment"] == "확인했습니다"
    status, _ = await agent.call("POST", f"/api/console/qa/evaluations/{mine[0]['id']}/ack", json={})
    assert status == 409

    status, text = await reviewer.call("GET", "/api/console/qa/export.csv", params=period(console))
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 2 and {r["reviewer"] for r in rows} == {"review1", "super1"}
    first = next(r for r in rows if r["reviewer"] == "review1")
    assert (first["agent"], first["greeting"], first["comment"]) == ("kim.minji", "4", "'=잘함")
    assert first["acknowledged_at"] or next(r for r in rows if r["reviewer"] == "super1")["acknowledged_at"]


async def test_draws_are_random_per_agent_and_within_the_period(db: Database, tmp_path: Path) -> None:
    """Two agents with 30 and 2 calls in the period and calls outside it: each draw takes at most
    per_agent of each agent's calls in the period, and the draws differ (C(30,3) = 4,060 sets: ten
    equal draws in a row would be 1 chance in 10^36), covering more than any fixed first three."""
    card = load_scorecards(tmp_path).scorecards["voice"]
    start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    async with db.transaction() as session:
        busy, quiet = Agent(username="busy", extension="agent2001"), Agent(username="quiet", extension="agent2002")
        session.add_all([busy, quiet])
        await session.flush()
        calls = [Contact(channel=Channel.voice, agent_id=busy.id, started_at=start + timedelta(minutes=i))
                 for i in range(30)]
        session.add_all([*calls, *(Contact(channel=Channel.voice, agent_id=quiet.id, started_at=start + timedelta(hours=h))
                                   for h in (1, 2)),
                         Contact(channel=Channel.voice, agent_id=busy.id, started_at=end),  # the next day
                         Contact(channel=Channel.sms, agent_id=busy.id, started_at=start)])  # not a voice contact
        await session.flush()
        in_period = {c.id for c in calls}
        busy_id, quiet_id = busy.id, quiet.id
    draws = []
    for _ in range(10):
        async with db.session() as session:  # rolled back: each draw starts from nothing drawn
            samples = await draw(session, start, end, 3, "voice", card, "review1")
            await session.rollback()
        by_agent = {agent: {s.contact_id for s in samples if s.agent_id == agent} for agent in (busy_id, quiet_id)}
        assert len(by_agent[busy_id]) == 3 and by_agent[busy_id] <= in_period
        assert len(by_agent[quiet_id]) == 2 and len(samples) == 5
        draws.append(frozenset(by_agent[busy_id]))
    assert len(set(draws)) > 1, draws
    assert len(frozenset().union(*draws)) > 3
