"""The reviewer side of issue #19: the player in headless Chromium on a two-channel recording
(MixMonitor D, raw ``.stereo.sln``): two waveform lanes, caller lines on the left and agent
lines on the right, the audio played as a true two-channel WAV; and search results with
personal data masked unless the reader's role may see it (audited)."""

from __future__ import annotations

import math
import shutil
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright import async_api as playwright_api
from sqlalchemy import select

from ivr.config import Settings
from ivr.db.models import AuditLog, Channel, Contact, Recording, TranscriptSegment
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console
from tests.support.waiting import page_holds

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        yield c


async def two_channel_recording(console: Console) -> int:
    """4 s: a tone on the caller's channel for the first 2 s, on the agent's for the last 2 s."""
    ctx = console.ctx
    rel = f"{datetime.now(UTC):%Y/%m/%d}/1700000100.1.stereo.sln"
    path = ctx.settings.recordings.dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = [int(12000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(32000)]
    # interleaved (caller, agent) samples: the caller's tone first, then the agent's
    raw = b"".join(struct.pack("<hh", v, 0) if n < 16000 else struct.pack("<hh", 0, v) for n, v in enumerate(tone))
    path.write_bytes(raw)
    async with ctx.db.transaction() as session:
        contact = Contact(channel=Channel.voice, call_id="1700000100.1", queue="general-ko")
        session.add(contact)
        await session.flush()
        rec = Recording(contact_id=contact.id, path=rel, format="sln/stereo", channels=2, sample_rate=8000,
                        duration_seconds=4.0, transcription_status="done", integrity="ok")
        session.add(rec)
        await session.flush()
        for start, end, speaker, text in [(0.2, 1.8, "caller", "버스 노선이 궁금해요"),
                                          (2.2, 3.8, "agent", "네 확인해 드리겠습니다")]:
            session.add(TranscriptSegment(recording_id=rec.id, contact_id=contact.id, speaker=speaker,
                                          start=start, end=end, text=text))
        return int(rec.id)


async def test_player_shows_caller_and_agent_lanes(console: Console) -> None:
    rec_id = await two_channel_recording(console)
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM}"
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(15_000)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            target = f"/console/reviewer/recordings/{rec_id}"
            await page.goto(f"{console.url}{target}")
            await page.fill("#username", "review1")
            await page.fill("#password", PASSWORD)
            await page.click("#sign-in")
            await page.wait_for_url(f"{console.url}{target}")
            await page.wait_for_selector("#transcript.lanes[data-ready='1']")
            await page.wait_for_selector("#waveform[data-lanes='caller agent']")
            assert await page.is_visible("#lane-heads")
            heads = await page.inner_text("#lane-heads")
            assert "민원인" in heads and "상담원" in heads  # review1 reads Korean
            columns = await page.evaluate("""[...document.querySelectorAll('#transcript li')].map(
                (li) => [li.className, getComputedStyle(li).gridColumnStart, li.getBoundingClientRect().left])""")
            caller = next(c for c in columns if "caller" in c[0])
            agent = next(c for c in columns if "agent" in c[0])
            assert caller[1] == "1" and agent[1] == "2" and agent[2] > caller[2], columns
            # the raw slin is served as a two-channel WAV the browser can play: its full length
            await page_holds(page, "document.getElementById('audio').readyState >= 1")
            duration = await page.evaluate("document.getElementById('audio').duration")
            assert abs(duration - 4.0) < 0.05, duration
            assert errors == []
        finally:
            await browser.close()


async def test_peaks_give_one_lane_per_speaker(console: Console) -> None:
    rec_id = await two_channel_recording(console)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{console.url}/api/login", json={"username": "review1", "password": PASSWORD}) as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{console.url}/api/console/recordings/{rec_id}/peaks", params={"n": "40"}) as r:
            assert r.status == 200
            body: dict[str, Any] = await r.json()
        async with http.get(f"{console.url}/api/recordings/{rec_id}/audio") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
            wav = await r.read()
    assert body["duration"] == pytest.approx(4.0)
    caller, agent = body["lanes"]["caller"], body["lanes"]["agent"]
    assert len(caller) == len(agent) == 40
    assert min(caller[:18]) > 0.3 and max(caller[22:]) == 0  # the caller spoke in the first half
    assert max(agent[:18]) == 0 and min(agent[22:]) > 0.3  # the agent in the second
    channels, rate = struct.unpack("<HI", wav[22:28])
    assert (wav[:4], channels, rate, len(wav) - 44) == (b"RIFF", 2, 8000, 4 * 8000 * 4)


async def test_search_masks_personal_data_unless_the_role_may_see_it(console: Console) -> None:
    ctx = console.ctx
    async with ctx.db.transaction() as session:
        session.add(Contact(channel=Channel.voice, queue="general-ko",
                            notes="정류장 문의, 회신 번호 010-2345-6789 오후 3시"))

    async def search(username: str, **params: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(f"{console.url}/api/login", json={"username": username, "password": PASSWORD}) as r:
                assert r.status == 200, await r.text()
            async with http.get(f"{console.url}/api/search", params={"q": "회신", **params}) as r:
                return r.status, await r.json()

    status, body = await search("review1")
    assert status == 200 and body["count"] == 1
    assert body["items"][0]["text"] == "정류장 문의, 회신 번호 [전화번호] 오후 3시"
    status, body = await search("review1", unmasked="1")  # nobody may, by default
    assert status == 403 and "unmasked_roles" in body["error"]
    ctx.settings.recordings.unmasked_roles = ["supervisor"]
    try:
        status, body = await search("super1", unmasked="1")
        assert status == 200 and "010-2345-6789" in body["items"][0]["text"]
        status, body = await search("review1", unmasked="1")
        assert status == 403
    finally:
        ctx.settings.recordings.unmasked_roles = []
    async with ctx.db.session() as session:
        audit = [(a.actor, a.action) for a in (await session.execute(select(AuditLog))).scalars()
                 if a.action.startswith("search")]
    assert ("super1", "search_unmasked") in audit and ("review1", "search") in audit
