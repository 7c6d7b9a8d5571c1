"""QA in headless Chromium: a reviewer (Korean) draws contacts at random per agent and scores one
with nothing pre-set; a supervisor (English) scores the same contact and sees the disagreement,
and draws again (nothing drawn twice); the reviewer sees the disagreement in Korean; the agent
(Korean) acknowledges the evaluation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ivr.quality.models import QaEvaluation, QaSample
from tests.support.console import Console
from tests.test_console_browser import chromium, console, sign_in  # noqa: F401  (fixtures by name)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def new_context(chromium: Any) -> Any:  # noqa: F811
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    return context


async def score(page: Any, values: dict[str, int]) -> None:
    for key, value in values.items():
        await page.check(f"fieldset[data-criterion='{key}'] input[value='{value}']")
    await page.click("#qa-score-submit")
    await page.wait_for_selector("#qa-score-status[data-ok='1']")


async def test_sampling_calibration_and_acknowledgement(console: Console, chromium: Any) -> None:  # noqa: F811
    reviewer_ctx, super_ctx, agent_ctx = [await new_context(chromium) for _ in range(3)]
    try:
        page = await sign_in(reviewer_ctx, console, "review1", "/console/quality")
        # The form opens on this month; yesterday too (the seed's calls are from the last hours).
        yesterday = datetime.now(ZoneInfo(console.ctx.settings.timezone)).date() - timedelta(days=1)
        await page.fill("#qa-from", str(min(yesterday, yesterday.replace(day=1))))
        await page.fill("#qa-per-agent", "3")
        await page.click("#qa-draw-submit")
        await page.wait_for_selector("#qa-draw-status[data-ok='1']")
        assert await page.inner_text("#qa-draw-status") == "추출한 문의: 2"
        row = page.locator("#qa-samples tr[data-agent='kim.minji']")
        await row.locator("button.score").click()
        await page.wait_for_selector("fieldset[data-criterion='greeting']")
        assert await page.locator("#qa-criteria input:checked").count() == 0  # no score is pre-set
        await page.check("fieldset[data-criterion='greeting'] input[value='4']")
        await page.click("#qa-score-submit")  # the other criteria not chosen: refused, and said why
        await page.wait_for_selector("#qa-score-status[data-ok='0']")
        assert "accuracy" in await page.inner_text("#qa-score-status")
        await score(page, {"greeting": 4, "accuracy": 5, "empathy": 3, "resolution": 5})
        assert await page.inner_text("#qa-score-status") == "평가를 저장했습니다."
        assert await page.locator("#qa-calibration tbody tr").count() == 5  # four criteria and the total

        sup = await sign_in(super_ctx, console, "super1", "/console/quality")
        await sup.locator("#qa-samples tr[data-agent='kim.minji'] button.score").click()
        await sup.wait_for_selector("fieldset[data-criterion='greeting']")
        await score(sup, {"greeting": 2, "accuracy": 5, "empathy": 3, "resolution": 1})
        greeting = sup.locator("#qa-calibration tr[data-criterion='greeting'].disagree")
        await greeting.wait_for()  # before, the table had the first reviewer alone (supervisors see all)
        assert await greeting.inner_text() == "Greeting and manner\t4\t2\t2"
        assert await sup.locator("#qa-calibration tr[data-criterion='accuracy']").get_attribute("class") == ""
        assert "Disagreement" in await sup.inner_text("#qa-calibration thead")
        # Drawing in English: the period's contacts are all drawn already, and never twice.
        await sup.fill("#qa-from", str(min(yesterday, yesterday.replace(day=1))))
        await sup.fill("#qa-per-agent", "3")
        await sup.click("#qa-draw-submit")
        await sup.wait_for_selector("#qa-draw-status[data-ok='1']")
        assert await sup.inner_text("#qa-draw-status") == "Contacts drawn: 0"
        # The first reviewer (Korean) opens the sample again: the disagreement, in Korean.
        again = page.locator("#qa-samples tr[data-agent='kim.minji'] button.score")
        assert await again.inner_text() == "결과 보기"  # scored: view, not score again
        await again.click()
        greeting_ko = page.locator("#qa-calibration tr[data-criterion='greeting'].disagree")
        await greeting_ko.wait_for()
        assert await greeting_ko.inner_text() == "인사·응대\t4\t2\t2"
        assert "차이" in await page.inner_text("#qa-calibration thead")
        assert await page.locator("#qa-score-form").is_hidden()

        agent = await sign_in(agent_ctx, console, "kim.minji", "/console/quality")
        assert await agent.locator("#qa-draw").count() == 0  # agents do not draw samples
        await agent.locator("#qa-mine tr[data-evaluation]").first.wait_for()
        assert await agent.locator("#qa-mine tr[data-evaluation]").count() == 2
        await agent.locator("#qa-mine button.ack").first.click()
        await agent.locator("#qa-mine .acked", has_text="확인함").wait_for()
        async with console.ctx.db.session() as session:
            acked = (await session.execute(select(QaEvaluation).where(QaEvaluation.acknowledged_at.is_not(None)))).scalars().all()
            assert len(acked) == 1
            assert len((await session.execute(select(QaSample))).scalars().all()) == 2
        for p in (page, sup, agent):
            assert p.js_errors == []
    finally:
        for context in (reviewer_ctx, super_ctx, agent_ctx):
            await context.close()


async def test_supervisor_reads_reports(console: Console, chromium: Any) -> None:  # noqa: F811
    context = await new_context(chromium)
    try:
        page = await sign_in(context, console, "super1", "/console/reports")
        yesterday = datetime.now(ZoneInfo(console.ctx.settings.timezone)).date() - timedelta(days=1)
        await page.fill("#rp-from", str(yesterday))
        await page.click("#rp-show")
        row = page.locator("#rp-table tr[data-queue='general-ko']").first
        await row.wait_for()
        assert await page.inner_text("#rp-note") == "Service level: answered within 20 s, of answered + abandoned"
        assert "voice" in await row.inner_text()
        href = await page.get_attribute("#rp-csv", "href")
        assert href is not None
        response = await page.request.get(console.url + href)
        assert response.status == 200
        lines = (await response.text()).lstrip("\ufeff").splitlines()
        assert lines[0].startswith("id,channel,status,started_at") and len(lines) >= 4
        await page.fill("#rp-to", str(yesterday - timedelta(days=1)))  # before "from": refused, said why
        await page.click("#rp-show")
        await page.wait_for_selector("#rp-note[data-ok='0']")
        assert "to: on or after from" in await page.inner_text("#rp-note")
        assert page.js_errors == []
    finally:
        await context.close()
