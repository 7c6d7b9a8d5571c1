"""Web chat abuse (issue #21 item 8) over real WebSockets on SQLite and PostgreSQL: the flood
limit belongs to the conversation (reconnecting does not reset it), an abandoned chat is closed
after ``sms.chat_idle_seconds`` while a connected one stays, and a queue change costs a constant
number of database statements and sends only changed positions (it used to cost two queries
and a frame per waiting citizen). The chat page links a phone number only with the texted code
(issue #21 item 5), in a real Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import event, func, select

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Message
from ivr.messaging.chat import LINES_PER_MINUTE
from ivr.messaging.models import ChatCodeSend, ChatConversation
from tests.support.messaging import sidecar_settings
from tests.support.waiting import eventually
from tests.support.web import serve


@pytest.fixture
async def ctx(db_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    settings = sidecar_settings(db_url, tmp_path / "var")
    settings.sms.chat_idle_seconds = 1.5
    database = Database(db_url)
    bus = MemoryBus()
    await bus.start()
    yield AppContext(settings, database, bus)
    await bus.close()
    await database.dispose()


async def frame(ws: aiohttp.ClientWebSocketResponse, *kinds: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            data = await ws.receive_json()
            if data.get("type") in kinds:
                return dict(data)


async def join(http: aiohttp.ClientSession, base: str, **hello: Any) -> tuple[aiohttp.ClientWebSocketResponse,
                                                                               dict[str, Any]]:
    ws = await http.ws_connect(f"{base}/chat/ws")
    await ws.send_json({"type": "hello", **hello})
    return ws, await frame(ws, "welcome")


async def test_flood_limit_survives_reconnecting(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        ws, welcome = await join(http, base)
        stored = 0
        for round_ in range(3):  # three connections with the same token, 20 lines each
            if round_:
                ws, _ = await join(http, base, token=welcome["token"], identity=welcome["identity"])
            for i in range(20):
                await ws.send_json({"type": "message", "id": f"r{round_}-{i}", "body": f"line {round_}-{i}"})
                stored += (await frame(ws, "message", "error"))["type"] == "message"
            await ws.close()
    assert stored == LINES_PER_MINUTE
    async with ctx.db.session() as session:
        count = (await session.execute(select(func.count()).select_from(Message).where(
            Message.contact_id == welcome["contact_id"]))).scalar_one()
    assert count == LINES_PER_MINUTE


async def test_abandoned_chats_time_out_connected_ones_stay(ctx: AppContext) -> None:
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        gone, gone_welcome = await join(http, base)
        staying, staying_welcome = await join(http, base)
        await gone.close()

        async def status(conv_id: int) -> str:
            async with ctx.db.session() as session:
                row = await session.get(ChatConversation, conv_id)
                assert row is not None
                return row.status

        await eventually(lambda: _is(status(gone_welcome["id"]), "closed"), "the abandoned chat to close")
        assert await status(staying_welcome["id"]) == "waiting"
        # Closed for idleness is a real close: resuming the token starts a new conversation.
        again, again_welcome = await join(http, base, token=gone_welcome["token"])
        assert again_welcome["resumed"] is False and again_welcome["id"] != gone_welcome["id"]
        await again.close()
        await staying.close()


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def test_a_queue_change_costs_constant_statements_and_sends_changed_positions(ctx: AppContext) -> None:
    waiters = 30
    statements: list[str] = []
    event.listen(ctx.db.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_a: statements.append(sql))
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        joined = [await join(http, base) for _ in range(waiters)]
        assert [w["position"] for _ws, w in joined] == list(range(1, waiters + 1))
        # Let every queue change of the joins be handled, then measure one change: the first leaves.
        last_ws = joined[-1][0]
        first_ws = joined[0][0]
        statements.clear()
        await first_ws.send_json({"type": "close"})
        moved = await frame(last_ws, "queue")
        while moved["position"] != waiters - 1:
            moved = await frame(last_ws, "queue")
        assert len(statements) < waiters, statements  # was >= 2 per waiting citizen
        # The second citizen's position changed once (2 -> 1); the third's to 2; nobody was
        # sent a position it already had.
        second_ws = joined[1][0]
        assert (await frame(second_ws, "queue"))["position"] == 1
        for ws, _w in joined[1:]:
            await ws.close()


async def test_citizen_links_a_phone_number_with_the_texted_code_in_a_browser(settings: Settings,
                                                                             tmp_path: Path) -> None:
    """The chat page's optional "link my number": a code is texted, typing it links the chat."""
    import re
    import shutil

    from playwright import async_api as playwright_api

    chromium = "/usr/bin/chromium"
    assert shutil.which(chromium), f"no Chromium at {chromium} (make services installs Debian's chromium)"
    ctx = await AppContext.create(settings, migrate=False)
    try:
        async with serve(ctx) as base, playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(locale="en-US")
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/chat")
            await page.select_option("#lang", "en")
            await playwright_api.expect(page.locator("#status")).to_contain_text("number 1 in line")
            await page.click("#phone-summary")
            await page.fill("#phone", "010-2222-3333")
            await page.click("#phone-button")
            await playwright_api.expect(page.locator("#phone-status")).to_contain_text("6-digit code")
            [job] = await ctx.bus.consume("sms.outbound", "t", "t", count=5, block=10)
            assert job.data["to"] == "+821022223333"
            code = re.search(r"\b(\d{6})\b", job.data["body"]).group(1)  # type: ignore[union-attr]
            await page.fill("#code", "000000" if code != "000000" else "111111")
            await page.click("#code-button")
            await playwright_api.expect(page.locator("#phone-status")).to_contain_text("Wrong or expired")
            await page.fill("#code", code)
            await page.click("#code-button")
            await playwright_api.expect(page.locator("#phone-status")).to_contain_text("confirmed")
            await browser.close()
            assert errors == []
        async with ctx.db.session() as session:
            conv = (await session.execute(select(ChatConversation))).scalar_one()
            assert conv.phone_verified_at is not None and conv.claimed_phone == "+821022223333"
    finally:
        await ctx.close()


async def test_one_chat_asking_again_and_again_texts_a_number_only_its_hourly_codes(ctx: AppContext) -> None:
    """SMS pumping from one chat: each new code request for the same number is a text to its
    owner, so they count like other chats' (``sms.chat_codes_per_phone_hour``); another number
    is still served, and the last code sent is the one that proves the number."""
    limit = ctx.settings.sms.chat_codes_per_phone_hour
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        ws, _welcome = await join(http, base)
        for _ in range(limit):
            await ws.send_json({"type": "phone", "phone": "010-5555-6666"})
            assert await ws.receive_json(timeout=20) == {"type": "phone_verification", "status": "sent"}
        await ws.send_json({"type": "phone", "phone": "01055556666"})
        assert await ws.receive_json(timeout=20) == {"type": "phone_verification", "status": "limited"}
        await ws.send_json({"type": "phone", "phone": "010-7777-8888"})
        assert await ws.receive_json(timeout=20) == {"type": "phone_verification", "status": "sent"}
        await ws.close()
    jobs = await ctx.bus.consume("sms.outbound", "t", "t", count=limit + 5, block=5)
    assert [job.data["to"] for job in jobs] == ["+821055556666"] * limit + ["+821077778888"]
    async with ctx.db.session() as session:
        sends = (await session.execute(select(ChatCodeSend.phone).order_by(ChatCodeSend.id))).scalars().all()
    assert sends == ["+821055556666"] * limit + ["+821077778888"]


async def test_the_line_and_code_limits_answer_exactly_and_are_separate(ctx: AppContext) -> None:
    """Past LINES_PER_MINUTE lines a chat is told to slow down (and nothing more is stored),
    but may still type its code; past as many code tries it is told to slow down too. A number
    gets only ``sms.chat_codes_per_phone_hour`` codes an hour."""
    async with serve(ctx) as base, aiohttp.ClientSession() as http:
        ws, welcome = await join(http, base)
        other, other_welcome = await join(http, base)
        for i in range(LINES_PER_MINUTE):
            await ws.send_json({"type": "message", "id": f"l{i}", "body": f"line {i}"})
            assert (await ws.receive_json(timeout=20))["client_id"] == f"l{i}"
        await ws.send_json({"type": "message", "id": "over", "body": "one too many"})
        assert await ws.receive_json(timeout=20) == {"type": "error", "error": "too many messages; slow down"}
        # Another chat is not slowed down by this one.
        await other.send_json({"type": "message", "id": "o1", "body": "저도 문의합니다"})
        assert (await other.receive_json(timeout=20))["client_id"] == "o1"

        # Three chats claim one number (three spellings of it): a fourth gets no code.
        third, _ = await join(http, base)
        fourth, _ = await join(http, base)
        for chat, phone in ((ws, "010-3333-4444"), (other, "+82 10 3333 4444"), (third, "01033334444")):
            await chat.send_json({"type": "phone", "phone": phone})
            assert await chat.receive_json(timeout=20) == {"type": "phone_verification", "status": "sent"}
        await fourth.send_json({"type": "phone", "phone": "010 3333 4444"})
        assert await fourth.receive_json(timeout=20) == {"type": "phone_verification", "status": "limited"}
        await third.close()
        await fourth.close()
        for _ in range(LINES_PER_MINUTE):
            await ws.send_json({"type": "verify", "code": "abcdef"})
            assert await ws.receive_json(timeout=20) == {"type": "error", "error": "wrong or expired code"}
        await ws.send_json({"type": "verify", "code": "abcdef"})
        assert await ws.receive_json(timeout=20) == {"type": "error", "error": "too many attempts; slow down"}
        await ws.close()
        await other.close()
    async with ctx.db.session() as session:
        counts = [(await session.execute(select(func.count()).select_from(Message).where(
            Message.contact_id == w["contact_id"]))).scalar_one() for w in (welcome, other_welcome)]
        claims = (await session.execute(select(ChatConversation.claimed_phone).order_by(ChatConversation.id))).all()
    assert counts == [LINES_PER_MINUTE, 1]
    assert [c for (c,) in claims] == ["+821033334444"] * 3 + [None]
