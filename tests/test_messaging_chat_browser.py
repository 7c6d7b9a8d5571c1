"""The citizen's chat page in a real Chromium against the real app: waiting position, an agent
(over the agent WebSocket) answering, the citizen typing back, and a reload resuming the same
conversation with its history."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
from playwright import async_api as playwright_api

from ivr.config import Settings
from ivr.context import AppContext
from tests.support.messaging import sign_in
from tests.support.web import serve

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


async def frame_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            frame = await ws.receive_json()
            if frame.get("type") == kind:
                return frame


async def test_citizen_chats_in_a_real_browser_and_resumes_after_reload(settings: Settings, tmp_path: Path) -> None:
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM} (make services installs Debian's chromium)"
    ctx = await AppContext.create(settings, migrate=False)
    profile = tmp_path / "chromium-profile"
    try:
        async with serve(ctx) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent, \
                playwright_api.async_playwright() as p:
            browser = await p.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=ARGS, locale="ko-KR",
                viewport={"width": 700, "height": 700})
            browser.set_default_timeout(15_000)
            page = browser.pages[0] if browser.pages else await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/chat")
            status = page.locator("#status")
            await playwright_api.expect(status).to_contain_text("대기 순번 1번")
            await playwright_api.expect(status).to_contain_text("접수번호")
            await page.fill("#text", "주차 단속 문의드립니다")
            await page.press("#text", "Enter")
            await playwright_api.expect(page.locator("#log li.citizen")).to_have_text(["주차 단속 문의드립니다"])

            await sign_in(agent, base, ctx)
            desk = await agent.ws_connect(f"{base}/api/messaging/agent/ws")
            assigned = await frame_of(desk, "assigned")
            conversation = assigned["conversation"]
            assert [m["body"] for m in conversation["messages"]] == ["주차 단속 문의드립니다"]
            await playwright_api.expect(status).to_contain_text("상담사가 연결되었습니다")
            await desk.send_json({"type": "message", "conversation_id": conversation["id"], "body": "어느 구인가요?"})
            await playwright_api.expect(page.locator("#log li.agent")).to_have_text(["어느 구인가요?"])

            await page.reload()
            await playwright_api.expect(page.locator("#log li")).to_have_text(["주차 단속 문의드립니다", "어느 구인가요?"])
            await page.fill("#text", "마포구입니다")
            await page.click("#send-button")
            heard = await frame_of(desk, "message")
            while heard["body"] != "마포구입니다":
                heard = await frame_of(desk, "message")
            assert heard["conversation_id"] == conversation["id"]

            await page.select_option("#lang", "en")
            await playwright_api.expect(status).to_contain_text("A counsellor joined")
            await page.screenshot(path=str(tmp_path / "chat.png"))
            await desk.close()
            await browser.close()
            assert errors == []
    finally:
        await ctx.close()
        shutil.rmtree(profile, ignore_errors=True)
