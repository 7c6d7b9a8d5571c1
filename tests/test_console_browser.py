"""Each role's main task in a real browser (headless Chromium driven by Playwright).

The app is the real one (every ``SETUPS`` entry) on a real socket with a temporary SQLite
database and the in-process bus. Asterisk's side is played by publishing the AMI bridge's
topics (``live.agents``, ``agent.screenpop``, ``live.metrics``) on that same bus, and the
commands the console sends to the bridge are read back from the ``agent.commands`` stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright import async_api as playwright_api
from sqlalchemy import select

from ivr.ami.service import AmiBridge
from ivr.config import Settings
from ivr.console.models import ConfigChange, QualityReview
from ivr.db.models import AuditLog, Contact
from ivr.queues import load_queues
from tests.support.ami_harness import wait_for
from tests.support.ami_peer import AmiPeer
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
SHOTS = Path(os.environ.get("DASAN_SCREENSHOTS", "/tmp/dasan-console-shots"))

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    """One Chromium for the module; each test gets its own browser context.

    ``launch`` gives Chromium a fresh temporary user-data dir (Playwright removes it on close)."""
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM} (make services installs Debian's chromium)"
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium: Any) -> AsyncIterator[Any]:
    # A new context per test: no cookies or storage carried over from another test.
    context = await chromium.new_context(viewport={"width": 1280, "height": 900},
                                         bypass_csp=True)  # the pages obey their CSP; the probes are eval'd
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        await context.close()


async def sign_in(context: Any, console: Console, username: str, path: str) -> Any:
    page = context.pages[0] if context.pages else await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    await page.goto(f"{console.url}{path}")
    assert page.url.startswith(f"{console.url}/login?next=")  # anonymous: sent to sign in first
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{console.url}{path}")
    return page


async def shot(page: Any, name: str) -> None:
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_agent_takes_a_call_and_saves_the_record(console: Console, browser: Any) -> None:
    ctx, ids = console.ctx, console.ids
    page = await sign_in(browser, console, "kim.minji", "/console/agent")
    assert await page.inner_text("#btn-ready") == "대기(수신 가능)"  # kim.minji reads Korean
    await page.wait_for_selector("body[data-ws='open']")

    # Ready: the console asks the AMI bridge (agent.commands job) to log the agent in.
    await page.click("#btn-ready")
    jobs = await ctx.bus.consume("agent.commands", "test", "t1", count=5, block=5)
    assert [j.data for j in jobs] == [{"action": "login", "username": "kim.minji"}]
    # The bridge reports the new state on live.agents; the page shows it.
    await ctx.bus.publish("live.agents", {"username": "lee.junho", "state": "paused", "reason": "x"})
    await ctx.bus.publish("live.agents", {"username": "kim.minji", "extension": "agent1001", "state": "available",
                                          "reason": None, "queues": ["general-ko"]})
    await page.wait_for_selector("#agent-state[data-state='available']")

    # Pause with a reason, then back to ready.
    await page.select_option("#pause-reason", "lunch")
    await page.click("#btn-pause")
    jobs = await ctx.bus.consume("agent.commands", "test", "t1", count=5, block=5)
    assert [j.data for j in jobs] == [{"action": "pause", "username": "kim.minji", "reason": "lunch"}]

    # A call is offered: the screen-pop shows the caller's earlier inquiry.
    await ctx.bus.publish("agent.screenpop", {"username": "kim.minji", "extension": "agent1001",
                                              "contact_id": ids["current"], "citizen_id": ids["citizen"],
                                              "caller": "+821012345678", "queue": "general-ko", "event": "offered"})
    await page.wait_for_selector("#call-event[data-event='offered']")
    await page.wait_for_selector("#earlier tbody tr >> text=지난주 쓰레기 수거 문의")
    assert await page.inner_text("#call-caller") == "+821012345678"
    await ctx.bus.publish("agent.screenpop", {"username": "kim.minji", "contact_id": ids["current"],
                                              "citizen_id": ids["citizen"], "caller": "+821012345678",
                                              "queue": "general-ko", "event": "connected"})
    await page.wait_for_selector("#call-event[data-event='connected']")

    # The counselling record is saved onto the contact.
    await page.select_option("#record-category", "transport.bus")
    await page.fill("#record-notes", "470번 버스 정류장 위치 안내함")
    await page.select_option("#record-resolution", "answered")
    await page.click("#record-save")
    await page.wait_for_selector("#record-status[data-ok='1']")
    async with ctx.db.session() as session:
        contact = await session.get(Contact, ids["current"])
        assert contact is not None
        assert (contact.notes, contact.resolution) == ("470번 버스 정류장 위치 안내함", "answered")
        assert contact.category_id is not None

    # Knowledge search finds earlier records and transcript lines (Korean).
    await page.fill("#kb-q", "470번 버스")
    await page.click("#kb-form button")
    await page.wait_for_selector("#kb-results li >> text=470번 버스 노선 변경 안내")
    # The SMS inbox shows the citizen's message.
    await page.wait_for_selector("#inbox >> text=가로등이 고장났어요")
    await shot(page, "agent")
    assert page.js_errors == []


async def test_agent_answers_a_web_chat(console: Console, browser: Any) -> None:
    """A citizen on the public chat WebSocket; the chat reaches the agent's inbox, who answers it."""
    page = await sign_in(browser, console, "kim.minji", "/console/agent")
    await page.wait_for_selector("body[data-chat='open']")
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{console.url}/chat/ws") as citizen:
        await citizen.send_json({"type": "hello", "language": "ko", "name": "시민"})
        await citizen.send_json({"type": "message", "id": "c-1", "body": "음식물 쓰레기 수거일이 언제인가요"})
        # The agent's chat desk is open, so the messaging hub assigns the chat to them at once.
        await page.wait_for_selector("#inbox .conversation[data-chat] >> text=음식물 쓰레기 수거일이 언제인가요")
        chat = page.locator("#inbox .conversation[data-chat]").filter(has_text="음식물")
        await chat.locator("input").fill("매주 화요일과 금요일입니다")
        await chat.locator("button[type=submit]").click()
        body = None
        while body != "매주 화요일과 금요일입니다":
            frame = await citizen.receive_json(timeout=15)
            body = frame.get("body") if frame.get("type") == "message" else None
    await page.wait_for_selector("#inbox >> text=매주 화요일과 금요일입니다")
    await shot(page, "agent-chat")
    assert page.js_errors == []


async def test_a_slow_inbox_refresh_keeps_the_reply_being_typed(console: Console, browser: Any) -> None:
    """The race behind test_agent_answers_a_web_chat's one time-out, made to happen every time:
    a citizen's second line starts an inbox refresh, whose chat list is held back until the
    agent has started typing. Finishing, the refresh must leave the form alone: replacing it
    used to drop what was typed, so the reply sent was empty and never reached the citizen."""
    page = await sign_in(browser, console, "kim.minji", "/console/agent")
    await page.wait_for_selector("body[data-chat='open']")
    held, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Any) -> None:
        held.set()
        await release.wait()
        await route.continue_()

    async with aiohttp.ClientSession() as http, http.ws_connect(f"{console.url}/chat/ws") as citizen:
        await citizen.send_json({"type": "hello", "language": "ko", "name": "시민"})
        await citizen.send_json({"type": "message", "id": "r-1", "body": "대형 폐기물 신고는 어떻게 하나요"})
        chat = page.locator("#inbox .conversation[data-chat]").filter(has_text="대형 폐기물")
        await chat.wait_for()
        await page.route("**/api/messaging/chats", hold)
        await citizen.send_json({"type": "message", "id": "r-2", "body": "스티커를 사야 하나요"})
        await asyncio.wait_for(held.wait(), 15)  # the refresh this line started waits for its chat list
        reply = chat.locator("input")
        await reply.evaluate("input => { input.dataset.typedIn = '1'; }")
        await reply.fill("구청 누리집에서 신청하시면 됩니다")
        async with page.expect_response("**/api/console/inbox"):  # the refresh's last request
            release.set()
        await page.unroute("**/api/messaging/chats", hold)
        await page.evaluate("() => new Promise((done) => setTimeout(done, 500))")  # its last step ran
        kept = page.locator("#inbox input[data-typed-in='1']")
        assert await kept.count() == 1, "the refresh replaced the reply being typed"
        assert await kept.input_value() == "구청 누리집에서 신청하시면 됩니다"
        await chat.locator("button[type=submit]").click()
        body = None
        while body != "구청 누리집에서 신청하시면 됩니다":
            frame = await citizen.receive_json(timeout=15)
            body = frame.get("body") if frame.get("type") == "message" else None
    assert page.js_errors == []


async def test_agent_state_goes_through_the_real_ami_bridge(console: Console, browser: Any) -> None:
    """Ready / pause / log out drive the AMI bridge (ivr.ami) against an AMI peer speaking Asterisk 22:
    the page learns the new state only from what Asterisk reports back (QueueMember events)."""
    ctx = console.ctx
    peer = AmiPeer(ctx.settings.ami.username, ctx.settings.ami.secret)
    ctx.settings.ami.port = await peer.start()
    peer.queues |= {"general-wide", "en"}
    bridge = AmiBridge(ctx, metrics_interval=0.05)
    await bridge.start()
    try:
        await peer.wait_login(1)
        await wait_for(lambda: bridge.resyncs >= 1)
        page = await sign_in(browser, console, "kim.minji", "/console/agent")
        await page.wait_for_selector("body[data-ws='open']")
        await page.click("#btn-ready")
        await page.wait_for_selector("#agent-state[data-state='available']")
        adds = {a["Queue"]: a["Penalty"] for a in peer.actions if a.get("Action") == "QueueAdd"}
        assert adds == {"en": "2", "general-ko": "0", "general-wide": "0"}  # penalties from agents.yaml
        await page.select_option("#pause-reason", "training")
        await page.click("#btn-pause")
        await page.wait_for_selector("#agent-state[data-state='paused']")
        assert "training" in await page.inner_text("#agent-state")
        await page.click("#btn-ready")  # from paused: unpause
        await page.wait_for_selector("#agent-state[data-state='available']")
        await page.click("#btn-logout")
        await page.wait_for_selector("#agent-state[data-state='logged_out']")
        assert not peer.members
        assert page.js_errors == []
    finally:
        await bridge.stop()
        await peer.close()


async def test_admin_changes_a_queue_and_sees_it_applied(console: Console, browser: Any) -> None:
    ctx = console.ctx
    # Asterisk's side: an AMI server speaking Asterisk 22's protocol (tests.support.ami_peer) answers the reloads.
    peer = AmiPeer(ctx.settings.ami.username, ctx.settings.ami.secret)
    ctx.settings.ami.port = await peer.start()
    try:
        await _admin_task(console, browser, peer)
    finally:
        await peer.close()


async def _admin_task(console: Console, browser: Any, peer: AmiPeer) -> None:
    ctx = console.ctx
    page = await sign_in(browser, console, "admin1", "/console/admin")
    assert "Queues and opening hours" in await page.inner_text("section:has(#queue-table) > h2")  # admin1: English
    assert await page.get_attribute("tr[data-queue='en'] td.strategy", "data-strategy") == "rrmemory"
    assert await page.inner_text("tr[data-queue='en'] td.strategy") == "round robin with memory"  # admin1: English
    await page.wait_for_function("document.getElementById('file-text').value.includes('queues:')")
    original = await page.input_value("#file-text")

    # An invalid change is refused with the file and line; nothing is written.
    await page.fill("#file-text", original.replace("    hours: weekdays\n", "    hours: weekday\n", 1))
    await page.click("#btn-apply")
    await page.wait_for_selector("#file-result[data-state='invalid'] >> text=unknown schedule 'weekday'")
    assert (ctx.settings.queues_dir / "queues.yaml").read_text() == original

    # A valid change: validate shows the diff, then save and apply.
    changed = original.replace("    description: English line\n",
                               "    description: English line\n    strategy: ringall\n", 1)
    await page.fill("#file-text", changed)
    await page.fill("#file-comment", "ring every English agent at once")
    await page.click("#btn-validate")
    await page.wait_for_selector("#file-result[data-state='valid']")
    assert "+    strategy: ringall" in await page.inner_text("#file-diff")
    await page.click("#btn-apply")
    await page.wait_for_selector("#file-result[data-state='applied']")
    assert await page.get_attribute("tr[data-queue='en'] td.strategy", "data-strategy") == "ringall"
    assert "ring every English agent at once" in await page.inner_text("#history")
    assert "app_queue.so" in await page.inner_text("#file-result")

    # On disk, in the rendered queues.conf, and reloaded in Asterisk over AMI.
    assert load_queues(ctx.settings.queues_dir).setting("en", "strategy") == "ringall"
    queues_conf = (ctx.settings.asterisk.config_dir / "queues.conf").read_text()
    assert queues_conf.split("\n[en]\n", 1)[1].startswith("strategy = ringall\n")
    reloads = [a.get("Module") for a in peer.actions if a.get("Action") == "Reload"]
    assert "app_queue.so" in reloads
    async with ctx.db.session() as session:
        change = (await session.execute(select(ConfigChange))).scalar_one()
        assert change.author == "admin1" and "+    strategy: ringall" in change.diff
        assert change.status == "applied"

    # Skills: kim.minji's English proficiency 3 -> 4 in the grid (agents.yaml keeps its comments).
    await page.select_option("tr[data-agent='kim.minji'] select[data-queue='en']", "4")
    await page.click("#btn-skills")
    await page.wait_for_selector("#file-result[data-state='applied']")
    await page.wait_for_selector("tr[data-queue='en'] >> text=kim.minji (4)")
    agents_yaml = (ctx.settings.queues_dir / "agents.yaml").read_text()
    assert "skills: {general-ko: 5, general-wide: 5, en: 4}" in agents_yaml and agents_yaml.startswith("# Counsellors")
    assert load_queues(ctx.settings.queues_dir).agents[0].penalty("en") == 1
    async with ctx.db.session() as session:
        actions = [a.action for a in (await session.execute(select(AuditLog))).scalars()]
    assert "config_changed" in actions and "sign_in" in actions
    await shot(page, "admin")
    assert page.js_errors == []


async def test_reviewer_finds_plays_and_seeks_by_transcript(console: Console, browser: Any) -> None:
    ctx, ids = console.ctx, console.ids
    page = await sign_in(browser, console, "review1", "/console/reviewer")
    await page.select_option("select[name=agent]", "lee.junho")
    await page.select_option("select[name=category]", "transport.bus")
    await page.fill("#find-q", "정류장")
    await page.click("#find-submit")
    row = page.locator(f"#recordings tr[data-recording='{ids['recording']}']")
    await row.wait_for()
    assert await page.locator("#recordings tbody tr").count() == 1
    await row.locator("a.open-link").click()
    await page.wait_for_url(f"{console.url}/console/reviewer/recordings/{ids['recording']}")
    await page.wait_for_selector("#transcript[data-ready='1']")
    await page.wait_for_selector("#waveform[data-peaks]")
    assert int(await page.get_attribute("#waveform", "data-peaks") or 0) >= 100

    # Click the third line: the audio seeks to its start and that line is the current one.
    await page.wait_for_function("document.getElementById('audio').readyState >= 1")
    third = page.locator("#transcript li").nth(2)
    await third.click()
    assert 4.0 <= await page.evaluate("document.getElementById('audio').currentTime") < 4.5
    await page.wait_for_selector("#transcript li.current >> text=정류장 위치도")
    # Play from the first line: the current line follows playback.
    await page.locator("#transcript li").nth(0).click()
    await page.evaluate("document.getElementById('audio').play()")
    await page.wait_for_function("document.getElementById('audio').currentTime > 2.1", timeout=20_000)
    await page.wait_for_selector("#transcript li.current >> text=470번 버스가")
    await page.evaluate("document.getElementById('audio').pause()")

    # Quality review.
    await page.check("input[name=empathy][value='5']")
    await page.fill("textarea[name=comment]", "친절한 안내")
    await page.click("#qa-save")
    await page.wait_for_selector("#qa-status[data-ok='1']")
    async with ctx.db.session() as session:
        review = (await session.execute(select(QualityReview))).scalar_one()
        assert review.scores == {"greeting": 3, "accuracy": 3, "empathy": 5, "resolution": 3}
        assert review.reviewer == "review1" and review.total == 70
        actions = {a.action for a in (await session.execute(select(AuditLog))).scalars()}
    assert {"recording_opened", "recording_audio", "transcript_viewed", "recording_peaks"} <= actions
    await shot(page, "reviewer")
    assert page.js_errors == []


def _metrics(waiting: int, available: int) -> dict[str, Any]:
    agents = {"available": available, "on_call": 2, "paused": 1, "wrapup": 0, "ringing": 0, "logged_in": available + 3}
    queue = {"waiting": waiting, "longest_wait": 95, "callbacks_waiting": 0, "agents": agents, "answered": 8,
             "abandoned": 2, "answered_within_sl": 6, "service_level": 0.6, "abandon_rate": 0.2}
    return {"at": "2026-11-25T09:00:00+00:00", "queues": {"general-ko": queue}, "agents": agents,
            "today": {"total": 12, "by_channel": {"voice": 10, "sms": 2}, "by_language": {"ko": 11, "en": 1},
                      "by_queue": {"general-ko": 10}, "avg_satisfaction": 4.25, "satisfaction_count": 4}}


async def test_wallboard_updates_live(console: Console, browser: Any) -> None:
    ctx = console.ctx
    page = await sign_in(browser, console, "super1", "/console/wallboard")
    await page.wait_for_selector("body[data-updates='1']")  # the current figures on connect
    # The hour chart counts today's seeded contacts (what the database holds, not a fixed number).
    values = (await page.get_attribute("#chart-hour", "data-values") or "").split(",")
    assert len(values) == 24 and sum(map(int, values)) >= 1
    await ctx.bus.publish("live.metrics", _metrics(waiting=3, available=4))
    await page.wait_for_selector("#tot-waiting >> text='3'")
    assert await page.inner_text("#tot-available") == "4"
    assert await page.inner_text("#tot-sl") == "60%"
    assert await page.inner_text("#tot-csat") == "4.3"
    assert await page.get_attribute("#chart-channel", "data-values") == "10,2"  # voice, sms
    await ctx.bus.publish("live.metrics", _metrics(waiting=7, available=1))
    await page.wait_for_selector("#tot-waiting >> text='7'")
    assert await page.inner_text("tr[data-queue='general-ko'] td.waiting") == "7"
    await shot(page, "wallboard")
    # The language switch: English -> Korean for this user, kept in the database.
    await page.select_option("#language-switch", "ko")
    await page.wait_for_selector("h1 >> text=실시간 현황판")
    await shot(page, "wallboard-ko")
    assert page.js_errors == []


async def test_login_rejects_wrong_password_and_logs_out(console: Console, browser: Any) -> None:
    page = await browser.new_page()
    await page.goto(f"{console.url}/login?lang=en")
    await page.fill("#username", "kim.minji")
    await page.fill("#password", "wrong-password")
    await page.click("#sign-in")
    await page.wait_for_selector("p.error >> text=Wrong username or password.")
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(f"{console.url}/console/agent")  # the role's home page
    await shot(page, "agent-home")
    await page.click("#sign-out")
    await page.wait_for_url(f"{console.url}/login")
    response = await page.goto(f"{console.url}/api/console/agent/state")
    assert response is not None and response.status == 401
    async with console.ctx.db.session() as session:
        actions = [a.action for a in (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars()]
    assert actions == ["sign_in_failed", "sign_in", "sign_out"], json.dumps(actions)
