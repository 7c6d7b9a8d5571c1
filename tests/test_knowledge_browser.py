"""The knowledge base in headless Chromium: an agent (Korean) finds an article without its
spacing and inserts it, filled in, into an SMS reply; in English the same article is found by
its English title and goes in in the citizen's language; a supervisor (English) turns a past
contact into an article with one click and revises it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ivr.config import Settings
from ivr.knowledge import store
from ivr.knowledge.models import Article
from tests.support.console import Console, prepare_settings, serve_console
from tests.support.waiting import page_holds
from tests.test_console_browser import chromium, sign_in  # noqa: F401  (the module's Chromium)

pytestmark = pytest.mark.asyncio(loop_scope="module")
ARTICLE = {"key": "streetlight", "channels": ["sms", "chat"], "texts": {
    "ko": {"title": "가로등 고장 신고", "body": "가로등 고장 신고가 접수되었습니다. 접수번호 {tracking_number}"},
    "en": {"title": "Broken street light", "body": "Your report is filed as {tracking_number}."}}}


@pytest_asyncio.fixture(loop_scope="module")
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        async with c.ctx.db.transaction() as session:
            await store.save(session, store.parse(ARTICLE), "super1")
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium: Any) -> AsyncIterator[Any]:  # noqa: F811
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        await context.close()


async def test_agent_inserts_an_article_into_an_sms_reply(console: Console, browser: Any) -> None:
    page = await sign_in(browser, console, "kim.minji", "/console/agent")
    sms = page.locator(f"#inbox .conversation[data-contact='{console.ids['sms']}']")
    await sms.wait_for()
    await page.fill("#kb-q", "가로등고장")  # written without the space the article has
    await page.click("#kb-form button")
    item = page.locator("#kb-articles li[data-key='streetlight']")
    await item.wait_for()
    assert "가로등 고장 신고" in await item.inner_text()
    await sms.locator("input").click()
    await item.locator("button.insert").click()
    await item.locator(".note", has_text="답장에 넣었습니다").wait_for()
    assert await sms.locator("input").input_value() == "가로등 고장 신고가 접수되었습니다. 접수번호 T-SMS"
    assert await item.locator(".usage").inner_text() == "1"
    async with console.ctx.db.session() as session:
        article = await session.get(Article, 1)
        assert article is not None and article.usage_count == 1
    assert page.js_errors == []


async def test_in_english_the_article_goes_in_in_the_citizens_language(console: Console, browser: Any) -> None:
    """The console in English (super1): the search finds the article by its English title and
    shows it in English; inserted into the Korean citizen's SMS reply, it is the Korean text."""
    async with console.ctx.db.session() as session:
        article = await store.by_key(session, "streetlight", "sms")
    assert article is not None
    used = article.usage_count
    page = await sign_in(browser, console, "super1", "/console/agent")
    sms = page.locator(f"#inbox .conversation[data-contact='{console.ids['sms']}']")
    await sms.wait_for()
    await page.fill("#kb-q", "street light")
    await page.click("#kb-form button")
    item = page.locator("#kb-articles li[data-key='streetlight']")
    await item.wait_for()
    assert "Broken street light" in await item.inner_text()
    assert await item.locator("button.insert").inner_text() == "Insert into reply"
    await sms.locator("input").click()
    await item.locator("button.insert").click()
    await item.locator(".note", has_text="Inserted into the reply").wait_for()
    assert await sms.locator("input").input_value() == "가로등 고장 신고가 접수되었습니다. 접수번호 T-SMS"
    assert await item.locator(".usage").inner_text() == str(used + 1)
    assert page.js_errors == []


async def test_supervisor_makes_an_article_from_a_past_contact(console: Console, browser: Any) -> None:
    page = await sign_in(browser, console, "super1", "/console/agent")
    await page.fill("#kb-q", "470번")
    await page.click("#kb-form button")
    # The transcript line of the recorded call; the draft takes that contact's notes as its body.
    await page.locator("#kb-results li", has_text="470번 버스가 변경되었습니다").locator("button.make-article").click()
    await page.wait_for_url("**/console/knowledge?article=*")
    await page_holds(page, "document.getElementById('kbm-title-ko').value === '교통 > 버스'")
    assert await page.input_value("#kbm-body-ko") == "470번 버스 노선 변경 안내"
    await page.fill("#kbm-key", "bus-470-route")
    await page.fill("#kbm-title-en", "Bus 470 route change")
    await page.fill("#kbm-body-en", "Route 470 has changed; reference {tracking_number}.")
    await page.check("#kbm-channels input[value='sms']")
    await page.click("#kbm-save")
    await page.wait_for_selector("#kbm-status[data-ok='1']")
    assert await page.inner_text("#kbm-status") == "Saved."
    assert await page.locator("#kbm-revisions li").count() == 2
    await page.fill("#kbm-body-en", "{nmae}")  # a variable the renderer does not know: refused, said why
    await page.click("#kbm-save")
    await page.wait_for_selector("#kbm-status[data-ok='0']")
    assert "nmae" in await page.inner_text("#kbm-status")
    await page.locator("#kbm-list tr[data-key='bus-470-route']").wait_for()
    async with console.ctx.db.session() as session:
        from sqlalchemy import select
        saved = (await session.execute(select(Article).where(Article.key == "bus-470-route"))).scalar_one()
        assert saved.channels == ["sms"] and saved.revision == 2 and saved.source_contact_id == console.ids["recorded"]
    assert page.js_errors == []
