"""Contact reports on SQLite and PostgreSQL with known answers: the streamed CSV (one row per
contact, spreadsheet-safe cells) and service level, abandonment, wait, talk and satisfaction per
site-local hour and day, queue, channel and language; the report API's input checks."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Channel, Contact
from ivr.reports.contacts import COLUMNS, aggregate, export_csv
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console

# 2026-11-30 23:0x UTC is 2026-12-01 08:0x in Seoul: the local day and hour, not UTC's, count.
AT = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
ROWS = [  # queue, channel, language, outcome, wait, talk, satisfaction
    ("general-ko", Channel.voice, "ko", "answered", 10.0, 100.0, 5),
    ("general-ko", Channel.voice, "ko", "answered", 30.0, 200.0, 3),  # answered after the 20 s level
    ("general-ko", Channel.voice, "ko", "abandoned", 40.0, None, None),
    ("general-en", Channel.voice, "en", "answered", 5.0, 60.0, None),
    (None, Channel.sms, "ko", None, None, None, 4),
]


async def _seed(db: Database) -> None:
    async with db.transaction() as session:
        for i, (queue, channel, language, outcome, wait, talk, sat) in enumerate(ROWS):
            session.add(Contact(channel=channel, queue=queue, language=language, outcome=outcome, wait_seconds=wait,
                                talk_seconds=talk, satisfaction=sat, started_at=AT.replace(minute=i),
                                notes="=HYPERLINK(\"x\")" if i == 0 else "", topic="=cmd" if i == 0 else None))
        session.add(Contact(channel=Channel.voice, queue="general-ko", started_at=datetime(2026, 12, 2, 1, tzinfo=UTC)))


async def test_aggregate_and_export(db: Database) -> None:
    await _seed(db)
    start, end = datetime(2026, 11, 30, 15, tzinfo=UTC), datetime(2026, 12, 1, 15, tzinfo=UTC)  # Dec 1 in Seoul
    async with db.session() as session:
        report = await aggregate(session, start, end, period="day", timezone="Asia/Seoul")
        rows = {(r["queue"], r["channel"], r["language"]): r for r in report.as_json()}
        assert {r["period"] for r in rows.values()} == {"2026-12-01"}
        ko = rows[("general-ko", "voice", "ko")]
        assert (ko["contacts"], ko["answered"], ko["abandoned"], ko["answered_within_sl"]) == (3, 2, 1, 1)
        assert ko["service_level"] == round(1 / 3, 4) and ko["abandon_rate"] == round(1 / 3, 4)
        assert ko["avg_wait_seconds"] == 20.0 and ko["avg_talk_seconds"] == 150.0 and ko["avg_satisfaction"] == 4.0
        assert rows[("general-en", "voice", "en")]["service_level"] == 1.0
        assert rows[("", "sms", "ko")]["service_level"] is None  # nothing offered to a queue
        hourly = await aggregate(session, start, end, period="hour", timezone="Asia/Seoul",
                                 service_level={"general-ko": 30}, default_service_level=20)
        by_hour = {(r["period"], r["queue"]) for r in hourly.as_json()}
        assert ("2026-12-01T08:00", "general-ko") in by_hour
        assert next(r for r in hourly.as_json() if r["queue"] == "general-ko")["answered_within_sl"] == 2
        data = b"".join([chunk async for chunk in export_csv(session, start, end)]).decode()
    assert data.startswith("\ufeff")
    lines = list(csv.reader(io.StringIO(data[1:])))
    assert tuple(lines[0]) == COLUMNS and len(lines) == 1 + len(ROWS)
    first = dict(zip(COLUMNS, lines[1], strict=True))
    assert first["topic"] == "'=cmd"  # a formula is not handed to a spreadsheet
    assert (first["queue"], first["outcome"], first["wait_seconds"], first["satisfaction"]) == (
        "general-ko", "answered", "10.0", "5")
    assert first["started_at"] == "2026-11-30T23:00:00+00:00"


@pytest.fixture
async def console(settings: Settings, db_url: str, tmp_path: Path) -> AsyncIterator[Console]:
    settings.database.url = db_url
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        await _seed(c.ctx.db)
        yield c


async def test_report_api(console: Console) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async def get(path: str, **params: Any) -> tuple[int, str]:
            async with http.get(console.url + path, params=params) as r:
                return r.status, await r.text()

        async with http.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
            assert r.status == 200
        status, _ = await get("/api/console/reports/summary", **{"from": "2026-12-01", "to": "2026-12-01"})
        assert status == 403  # agents do not read reports
        async with http.post(f"{console.url}/api/login", json={"username": "super1", "password": PASSWORD}) as r:
            assert r.status == 200
        for params in ({"from": "2026-12-01"}, {"from": "x", "to": "2026-12-01"},
                       {"from": "2026-12-02", "to": "2026-12-01"}, {"from": "2026-01-01", "to": "2026-12-01"}):
            status, body = await get("/api/console/reports/contacts.csv", **params)
            assert status == 400, params
        status, body = await get("/api/console/reports/contacts.csv", **{"from": "2026-12-01", "to": "2026-12-01"})
        assert status == 200 and len(list(csv.reader(io.StringIO(body)))) == 1 + len(ROWS)
        status, body = await get("/api/console/reports/summary", **{"from": "2026-12-01", "to": "2026-12-02",
                                                                    "period": "day"})
        assert status == 200
        import json
        rows = json.loads(body)["rows"]
        assert {r["period"] for r in rows} == {"2026-12-01", "2026-12-02"}
        assert sum(r["contacts"] for r in rows) == len(ROWS) + 1


async def test_report_and_qa_pages_open_on_this_month_of_the_site_calendar(console: Console) -> None:
    """The period fields come filled in by the server with the site's dates: a browser on UTC is
    still on the 7th while KST is on the 8th (from 15:00 UTC), and its own date dropped that
    day's calls from the default period."""
    import re
    from zoneinfo import ZoneInfo

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{console.url}/api/login", json={"username": "super1", "password": PASSWORD}) as r:
            assert r.status == 200
        today = datetime.now(ZoneInfo(console.ctx.settings.timezone)).date()
        for page, prefix in (("/console/reports", "rp"), ("/console/quality", "qa")):
            async with http.get(console.url + page) as r:
                html = await r.text()
                assert r.status == 200
            found = {name: re.search(rf'id="{prefix}-{name}" value="([0-9-]*)"', html) for name in ("from", "to")}
            assert found["from"] and found["from"].group(1) == today.replace(day=1).isoformat(), page
            assert found["to"] and found["to"].group(1) == today.isoformat(), page
