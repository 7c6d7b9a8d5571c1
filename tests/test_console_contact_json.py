"""What the agent screen reads about a contact (GET /api/console/contacts/<id>), field by field,
on the real app over a real socket: the contact, its citizen and the earlier inquiries, each
with channel, status, category (code and both names), the record and the outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.config import Settings
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console


@pytest.fixture
async def seeded(settings: Settings, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Console]:
    settings.database.url = sqlite_url
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        yield c


async def test_the_agent_screen_gets_every_field_of_the_contact_and_the_earlier_ones(seeded: Console) -> None:
    ids = seeded.ids
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{seeded.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
            assert r.status == 200
        async with http.get(f"{seeded.url}/api/console/contacts/{ids['current']}") as r:
            assert r.status == 200
            body: dict[str, Any] = await r.json()

    def without_time(contact: dict[str, Any]) -> dict[str, Any]:
        assert isinstance(contact.pop("started_at"), str)
        return contact

    assert without_time(body["contact"]) == {
        "id": ids["current"], "channel": "voice", "status": "open", "language": "ko", "queue": "general-ko",
        "topic": None, "tracking_number": "T-CURRENT", "category_id": None, "category": None, "notes": "",
        "resolution": None, "satisfaction": None, "outcome": None}
    assert body["citizen"] == {"id": ids["citizen"], "identity": "+821012345678", "kind": "phone", "name": None}
    recorded, earlier = (without_time(c) for c in body["earlier"])
    assert earlier == {
        "id": ids["earlier"], "channel": "voice", "status": "closed", "language": "ko", "queue": "general-ko",
        "topic": None, "tracking_number": "T-EARLIER", "category_id": earlier["category_id"],
        "category": {"code": "waste", "ko": "청소·쓰레기", "en": "Waste"}, "notes": "지난주 쓰레기 수거 문의",
        "resolution": "answered", "satisfaction": None, "outcome": None}
    assert isinstance(earlier["category_id"], int)
    assert (recorded["id"], recorded["category"], recorded["satisfaction"]) == (
        ids["recorded"], {"code": "transport.bus", "ko": "교통 > 버스", "en": "Transport > Bus"}, 4)


async def test_the_agent_page_is_served_at_its_address(seeded: Console) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{seeded.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
            assert r.status == 200
        async with http.get(f"{seeded.url}/console/agent", allow_redirects=False) as r:
            page = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
    assert "transport.bus" in page and "callback" in page  # its categories and resolutions
