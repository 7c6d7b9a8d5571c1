"""Issue #18 in a real browser (headless Chromium): a supervisor listens, whispers and barges
from the wallboard's live call list; the agent screen and the wallboard say plainly, in
Korean and English, when the phone system is down or its bridge is silent; the wallboard's
clock is the site's and its hour chart fits a 1280-px screen.

The app is the real one; the AMI bridge's side is played on the same bus (``live.ami``,
``live.supervise``, ``live.metrics``) and its commands are read from ``agent.commands``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from ivr.ami.models import LiveCall
from ivr.ami.service import ami_status
from ivr.config import Settings
from ivr.console.i18n import TEXTS
from ivr.db.models import AuditLog, Recording
from tests.support.console import Console, prepare_settings, serve_console
from tests.test_console_browser import chromium, shot, sign_in  # noqa: F401  (the module's Chromium)
from tests.test_supervise import give_phone, live_calls

pytestmark = pytest.mark.asyncio(loop_scope="module")
KO, EN = 0, 1


@pytest_asyncio.fixture(loop_scope="module")
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    prepare_settings(settings, tmp_path)
    give_phone(settings)
    async with serve_console(settings) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium: Any) -> AsyncIterator[Any]:  # noqa: F811
    # The browser's own clock is UTC: the wallboard must still show the site's (Asia/Seoul).
    context = await chromium.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC",
                                         bypass_csp=True)
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        await context.close()


async def test_supervisor_listens_whispers_and_barges_from_the_wallboard(console: Console, browser: Any) -> None:
    ctx = console.ctx
    await live_calls(console, talking_seconds=80)
    await ctx.bus.publish("live.ami", ami_status("connected", True))
    page = await sign_in(browser, console, "super1", "/console/wallboard")  # super1 reads English
    assert await page.inner_text(".brand") == "120 Dasan Call Center"
    row = page.locator("#live-calls tr[data-call='1700000001.5']")
    await row.wait_for()
    text = await row.inner_text()
    assert "김민지" in text and "+821012345678" in text and "general-ko" in text
    assert "main › 2 › queue:general-ko" in text and TEXTS["call_state_connected"][EN] in text
    waiting = page.locator("#live-calls tr[data-call='1700000002.9']")
    assert await waiting.locator("button").count() == 0  # nobody to listen to yet
    assert [await b.inner_text() for b in await row.locator("button").all()] == ["Listen", "Whisper", "Barge"]

    for mode in ("listen", "whisper", "barge"):
        await row.locator(f"button.sv-{mode}").click()
        jobs = await ctx.bus.consume("agent.commands", "test", "t1", count=5, block=5)
        assert [j.data for j in jobs] == [{"action": "supervise", "username": "super1", "supervisor": "super1",
                                           "agent": "kim.minji", "mode": mode, "call": "1700000001.5"}]
        await page.wait_for_selector(f"#supervise-note >> text={TEXTS['sv_ringing'][EN]}")
    async with ctx.db.session() as session:
        modes = [a.data["mode"] for a in (await session.execute(
            select(AuditLog).where(AuditLog.action == "supervise").order_by(AuditLog.id))).scalars()]
    assert modes == ["listen", "whisper", "barge"]

    # The supervisor answered: the page says so and how to switch modes.
    await ctx.bus.publish("live.supervise", {"username": "super1", "action": "supervise", "mode": "barge",
                                             "message": "barge on kim.minji: your phone answered"})
    await page.wait_for_selector(f"#supervise-note >> text={TEXTS['sv_started'][EN]} (Barge)")
    # The bridge could not ring the phone: the page says why.
    await ctx.bus.publish("live.supervise", {"username": "super1", "action": "supervise", "mode": "listen",
                                             "error": "Originate: Extension does not exist."})
    await page.wait_for_selector("#supervise-note[data-error='1'] >> text=Extension does not exist")
    await shot(page, "wallboard-live-calls")

    # Asterisk goes away: a plain banner, the badge is not "live", and listening is refused.
    await ctx.bus.publish("live.ami", ami_status("connecting", False))
    await page.wait_for_selector(f"#phone-banner >> text={TEXTS['phone_down'][EN]}")
    assert await page.inner_text("#ws-status") == TEXTS["phone_is_down"][EN]
    await row.locator("button.sv-listen").click()
    await page.wait_for_selector(f"#supervise-note >> text={TEXTS['phone_down'][EN]}")
    assert await ctx.bus.consume("agent.commands", "test", "t1", count=5, block=0.5) == []
    await shot(page, "wallboard-phone-down-en")
    await ctx.bus.publish("live.ami", ami_status("connected", True))
    await page.wait_for_selector("#phone-banner", state="hidden")
    assert await page.inner_text("#ws-status") == TEXTS["live"][EN]
    assert page.js_errors == []


async def test_supervisor_listens_whispers_and_barges_in_korean(console: Console, browser: Any) -> None:
    """The same controls in Korean: the supervisor switches the console to Korean, and the
    buttons, the call's state, the notes and the refusal while Asterisk is down are Korean."""
    ctx = console.ctx
    async with ctx.db.session() as session:
        if await session.get(LiveCall, "1700000001.5") is None:  # the English test may have run first
            await live_calls(console, talking_seconds=80)
    await ctx.bus.publish("live.ami", ami_status("connected", True))
    page = await sign_in(browser, console, "super1", "/console/wallboard")
    try:
        await page.select_option("#language-switch", "ko")
        await page.wait_for_selector("html[lang='ko'] #live-calls")
        assert await page.inner_text(".brand") == "120 다산콜센터"
        row = page.locator("#live-calls tr[data-call='1700000001.5']")
        await row.wait_for()
        assert TEXTS["call_state_connected"][KO] in await row.inner_text()
        assert [await b.inner_text() for b in await row.locator("button").all()] == [
            TEXTS[f"mode_{mode}"][KO] for mode in ("listen", "whisper", "barge")]
        for mode in ("whisper", "barge", "listen"):
            await row.locator(f"button.sv-{mode}").click()
            jobs = await ctx.bus.consume("agent.commands", "test", "t3", count=5, block=5)
            assert [(j.data["mode"], j.data["agent"]) for j in jobs] == [(mode, "kim.minji")]
            await page.wait_for_selector(f"#supervise-note >> text={TEXTS['sv_ringing'][KO]}")
            await page.evaluate("document.getElementById('supervise-note').textContent = ''")
        await ctx.bus.publish("live.supervise", {"username": "super1", "action": "supervise", "mode": "whisper",
                                                 "message": "whisper on kim.minji: your phone answered"})
        await page.wait_for_selector(f"#supervise-note >> text={TEXTS['sv_started'][KO]} ({TEXTS['mode_whisper'][KO]})")
        await ctx.bus.publish("live.supervise", {"username": "super1", "action": "supervise", "mode": "listen",
                                                 "error": "Originate: Extension does not exist."})
        await page.wait_for_selector(f"#supervise-note[data-error='1'] >> text={TEXTS['sv_failed'][KO]}")
        await ctx.bus.publish("live.ami", ami_status("connecting", False))
        await page.wait_for_selector(f"#phone-banner >> text={TEXTS['phone_down'][KO]}")
        await row.locator("button.sv-barge").click()
        await page.wait_for_selector(f"#supervise-note >> text={TEXTS['sv_failed'][KO]}: {TEXTS['phone_down'][KO]}")
        assert await ctx.bus.consume("agent.commands", "test", "t3", count=5, block=0.5) == []
        await shot(page, "wallboard-live-calls-ko")
        assert page.js_errors == []
    finally:
        await ctx.bus.publish("live.ami", ami_status("connected", True))
        await page.select_option("#language-switch", "en")  # super1 reads English in the other tests
        await page.wait_for_selector("html[lang='en']")


async def test_wallboard_in_korean_says_the_phone_system_is_down(console: Console, browser: Any) -> None:
    ctx = console.ctx
    await ctx.bus.publish("live.ami", ami_status("connected", True))
    page = await sign_in(browser, console, "kim.minji", "/console/wallboard")  # kim.minji reads Korean
    await page.wait_for_selector("body[data-updates='1']")
    assert await page.locator("#live-calls").count() == 0  # the call list is for supervisors
    # The site's clock: 02:00 UTC is 11:00 in Seoul, whatever the browser's own zone.
    await ctx.bus.publish("live.metrics", {"at": "2026-12-07T02:00:00+00:00", "timezone": "Asia/Seoul",
                                           "queues": {}, "agents": {}, "today": {}})
    await page.wait_for_selector("#updated-at >> text=11:00:00")
    assert await page.inner_text("#site-tz") == "Asia/Seoul"
    # The hour chart is as wide as its card: all 24 hours on a 1280-px screen, labelled in Korean.
    box = await page.locator("#chart-hour").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280
    assert await page.evaluate("document.getElementById('chart-hour').width") == round(box["width"])
    labels = (await page.get_attribute("#chart-hour", "data-labels") or "").split(",")
    assert labels[0] == "0시" and labels[23] == "23시"
    assert await page.inner_text(".brand") == "120 다산콜센터"  # the configured name, in Korean

    await ctx.bus.publish("live.ami", ami_status("connecting", False))
    await page.wait_for_selector(f"#phone-banner >> text={TEXTS['phone_down'][KO]}")
    assert await page.inner_text("#ws-status") == TEXTS["phone_is_down"][KO]
    await shot(page, "wallboard-phone-down-ko")
    assert page.js_errors == []


async def test_agent_screen_says_why_ready_does_not_work(console: Console, browser: Any) -> None:
    ctx = console.ctx
    await ctx.bus.publish("live.ami", ami_status("connecting", False))
    page = await sign_in(browser, console, "kim.minji", "/console/agent")
    await page.wait_for_selector(f"#phone-banner >> text={TEXTS['phone_down'][KO]}")
    await page.click("#btn-ready")
    await page.wait_for_selector(f"#state-note.error >> text={TEXTS['phone_down'][KO]}")
    assert await ctx.bus.consume("agent.commands", "test", "t2", count=5, block=0.5) == []
    await shot(page, "agent-phone-down-ko")

    # Back up: Ready is asked for in words, not as a raw action name.
    await ctx.bus.publish("live.ami", ami_status("connected", True))
    await page.wait_for_selector("#phone-banner", state="hidden")
    await page.click("#btn-ready")
    await page.wait_for_selector(f"#state-note >> text={TEXTS['st_requested'][KO]}: {TEXTS['act_login'][KO]}")
    assert "login" not in await page.inner_text("#state-note")
    jobs = await ctx.bus.consume("agent.commands", "test", "t2", count=5, block=5)
    assert [j.data for j in jobs] == [{"action": "login", "username": "kim.minji"}]
    # Nobody answers the request (no bridge took it): after 10 s the note says so, not "sent" forever.
    await page.wait_for_selector(f"#state-note.error >> text={TEXTS['act_no_answer'][KO]}", timeout=20_000)
    # The bridge tried and Asterisk was gone: the agent is told, and that it will be retried.
    await ctx.bus.publish("live.agents", {"username": "kim.minji", "action": "login", "retrying": True,
                                          "error": "Asterisk not reachable / Asterisk 연결 안 됨: AMI connection lost"})
    await page.wait_for_selector(f"#state-note.error >> text={TEXTS['act_retrying'][KO]}")

    # The bridge itself falls silent (no heartbeat for three of its intervals).
    await ctx.bus.publish("live.ami", {**ami_status("connected", True), "every": 0.5})
    await page.wait_for_selector(f"#phone-banner >> text={TEXTS['phone_silent'][KO]}")
    assert page.js_errors == []


async def test_a_recording_without_a_transcript_says_so_without_a_number(console: Console, browser: Any) -> None:
    async with console.ctx.db.transaction() as session:
        seeded = (await session.execute(select(Recording).limit(1))).scalar_one()
        bare = Recording(contact_id=console.ids["current"], path=seeded.path + ".copy.wav", format="wav", channels=1,
                         sample_rate=8000, duration_seconds=6.0, transcription_status="pending", integrity="ok")
        session.add(bare)
        await session.flush()
        rec_id = bare.id
    page = await sign_in(browser, console, "review1", f"/console/reviewer/recordings/{rec_id}")  # Korean
    item = page.locator("#transcript li", has_text=TEXTS["no_transcript"][KO])
    await item.wait_for()
    assert await item.evaluate("li => getComputedStyle(li).listStyleType") == "none"
    assert await page.locator("#transcript li").count() == 1
