"""A sign-language video call from the citizen's browser to the agent's browser through a real
Asterisk: /call -> credential (AMI DBPut into astdb) -> SIP over WebSocket -> dasan-web-video
-> sign-video queue -> the agent's console softphone (registered with JsSIP over WebSocket).

Asserted through each browser's ``getStats()``: video frames are decoded on both sides (the
agent's at 640x480 or more) and audio packets flow both ways; then the contact row (channel
``video``, queue, agent) and that the credential cannot start a second call.

Runs when an ``asterisk`` binary (built with res_srtp, res_http_websocket and
res_pjsip_transport_websocket) is on PATH; Asterisk runs from a temporary directory on
loopback ports, as in tests/test_asterisk_real.py. Chromium's camera and microphone are files.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from playwright import async_api as playwright_api
from sqlalchemy import select

from ivr import services
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db.models import Agent, Contact, User
from ivr.web.app import create_app
from ivr.web.auth import hash_password
from tests.support.webrtc import CHROMIUM, make_fake_media
from tests.test_asterisk_real import (
    ASTERISK,
    MODULE_DIRS,
    configure,
    free_port,
    start_pbx,
    stop_pbx,
)

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 22 (with libsrtp2-dev at build time) to run the WebRTC call test"),
    pytest.mark.timeout(240),
]

PASSWORD = "softphone-agent-pw-9"
# Chromium hides host candidates behind mDNS names Asterisk cannot resolve.
ICE_ARGS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]


def _need_webrtc_modules() -> None:
    moddir = next((d for d in MODULE_DIRS if (d / "app_queue.so").exists()), None)
    missing = [m for m in ("res_srtp.so", "res_http_websocket.so", "res_pjsip_transport_websocket.so")
               if moddir is None or not (moddir / m).exists()]
    if missing:
        pytest.skip(f"this Asterisk was built without {', '.join(missing)} (libsrtp2-dev missing at ./configure?)")


async def wait_until(probe: Any, what: str, timeout: float = 40.0, every: float = 0.25) -> Any:
    """Poll ``probe()`` (a coroutine function) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


STATS = """async (side) => {
  const holder = side === 'agent' ? window.dasanSoftphone : window.dasanCall;
  const pc = holder && holder.session && holder.session.connection;
  if (!pc) return null;
  const out = {video_in: 0, audio_in: 0, audio_out: 0, video_out: 0, width: 0, height: 0, fps: 0};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.video_in = s.framesDecoded || 0; out.width = s.frameWidth || 0; out.height = s.frameHeight || 0;
      out.fps = s.framesPerSecond || 0;
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio_in = s.packetsReceived || 0;
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.audio_out = s.packetsSent || 0;
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.video_out = s.framesEncoded || 0;
  });
  return out;
}"""


@pytest_asyncio.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[AppContext, str, Any]]:
    """Asterisk, the AMI bridge and the web app on one context; yields (ctx, web url, pbx)."""
    _need_webrtc_modules()
    configure(settings, tmp_path)
    w = settings.webrtc
    w.enabled, w.http_port = True, free_port()
    w.softphone_agents = ["park.soyeon"]
    w.video_slots = w.voice_slots = 2
    queues = settings.queues_dir / "queues.yaml"
    data = yaml.safe_load(queues.read_text())
    data["queues"]["sign-video"]["hours"] = "always"
    queues.write_text(yaml.safe_dump(data, allow_unicode=True))
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    pbx = start_pbx(settings, tmp_path, prompts)
    ctx = await AppContext.create(settings)
    bridge = services.build("ami", ctx)
    runner = web.AppRunner(create_app(ctx), access_log=None)
    try:
        async with ctx.db.transaction() as session:
            session.add(User(username="park.soyeon", display_name="박소연", password_hash=hash_password(PASSWORD),
                             role="agent", language="en"))
        await bridge.start()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield ctx, f"http://{host}:{port}", pbx
    finally:
        await runner.cleanup()
        await bridge.stop()
        await ctx.close()
        stop_pbx(pbx)


async def test_sign_language_video_call_citizen_to_agent_browser(stack: tuple[AppContext, str, Any], tmp_path: Path) -> None:
    ctx, url, pbx = stack
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM}"
    media = make_fake_media(tmp_path / "media", seconds=6)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*media.chromium_args(), *ICE_ARGS])
        try:
            await _call(ctx, url, pbx, browser)
        finally:
            await browser.close()


async def _call(ctx: AppContext, url: str, pbx: Any, browser: Any) -> None:
    # -- the agent signs in; the softphone registers; Ready puts them in their queues
    agent_ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await agent_ctx.grant_permissions(["camera", "microphone"], origin=url)
    agent_ctx.set_default_timeout(30_000)
    agent = await agent_ctx.new_page()
    agent_errors: list[str] = []
    agent.on("pageerror", lambda exc: agent_errors.append(str(exc)))
    await agent.goto(f"{url}/login?next=/console/agent")
    await agent.fill("input[name=username]", "park.soyeon")
    await agent.fill("input[name=password]", PASSWORD)
    await agent.click("button[type=submit]")
    await agent.wait_for_url(f"{url}/console/agent")
    await agent.wait_for_selector("#sp-state[data-state=sp_registered]")
    assert "agent1003" in pbx.cli("pjsip show contacts")
    await agent.wait_for_selector("body[data-ws='open']")
    await agent.click("#btn-ready")
    await agent.wait_for_selector("#agent-state[data-state='available']")
    assert "PJSIP/agent1003" in pbx.cli("queue show sign-video")

    # -- the citizen calls in sign language from /call
    citizen_ctx = await browser.new_context(viewport={"width": 390, "height": 844})
    await citizen_ctx.grant_permissions(["camera", "microphone"], origin=url)
    citizen_ctx.set_default_timeout(30_000)
    citizen = await citizen_ctx.new_page()
    citizen_errors: list[str] = []
    citizen.on("pageerror", lambda exc: citizen_errors.append(str(exc)))
    credentials: list[dict[str, Any]] = []

    async def keep_credential(response: Any) -> None:
        if response.url.endswith("/api/webcall/credentials") and response.ok:
            credentials.append(await response.json())

    citizen.on("response", lambda r: asyncio.ensure_future(keep_credential(r)))
    await citizen.goto(f"{url}/call?lang=ko")
    await citizen.click("#btn-video")
    await agent.wait_for_selector("#sp-state[data-state=sp_ringing]")
    await agent.click("#sp-answer")
    await agent.wait_for_selector("#sp-state[data-state=sp_in_call]")

    # -- media flows both ways, video decoded on both sides
    agent_stats = await wait_until(lambda: _flowing(agent, "agent"), "video and audio at the agent")
    citizen_stats = await wait_until(lambda: _flowing(citizen, "citizen"), "video and audio at the citizen")
    print(f"agent sees {agent_stats}; citizen sees {citizen_stats}")  # shown with -s
    assert agent_stats["width"] >= 640 and agent_stats["height"] >= 480, agent_stats
    assert agent_stats["video_out"] > 0 and citizen_stats["video_out"] > 0  # both cameras sent
    await citizen.wait_for_selector("#call-state[data-key=in_call]")
    box = await agent.eval_on_selector("#sp-remote", "v => [v.clientWidth, v.clientHeight]")
    assert box[0] >= 640 and box[1] >= 480
    channels = pbx.cli("core show channels concise")
    assert "PJSIP/webvideo-" in channels and "PJSIP/agent1003" in channels

    # -- the agent hangs up; the contact is a video contact of the sign-video queue
    await agent.click("#sp-hangup")
    await citizen.wait_for_selector("#choices:not([hidden])")
    await agent.wait_for_selector("#sp-state[data-state=sp_registered]")

    async def contact() -> Contact | None:
        async with ctx.db.session() as session:
            row = (await session.execute(select(Contact).where(Contact.channel == "video"))).scalar_one_or_none()
            if row is None or row.agent_id is None:
                return None
            return row

    row = await wait_until(contact, "the video contact with its agent")
    assert row.queue == "sign-video" and row.citizen_id is None
    async with ctx.db.session() as session:
        agent_row = await session.get(Agent, row.agent_id)
    assert agent_row is not None and agent_row.username == "park.soyeon"

    # -- the credential was good for one call: the same password cannot start another
    assert len(credentials) == 1
    cred = credentials[0]
    outcome = await citizen.evaluate("""(c) => new Promise((resolve) => {
        const ua = new JsSIP.UA({sockets: [new JsSIP.WebSocketInterface(c.ws_url)], uri: c.uri,
            authorization_user: c.username, password: c.password, register: false});
        ua.start();
        const s = ua.call(c.target, {mediaConstraints: {audio: true, video: false}});
        s.on('confirmed', () => { resolve('confirmed'); s.terminate(); ua.stop(); });
        s.on('failed', (e) => { resolve('failed:' + e.cause); ua.stop(); });
    })""", cred)
    assert outcome.startswith("failed:"), outcome
    assert "Error to authenticate" in pbx.console() or "Failed to authenticate" in pbx.console()
    assert agent_errors == [] and citizen_errors == []


async def _flowing(page: Any, side: str) -> dict[str, Any] | None:
    stats = await page.evaluate(STATS, side)
    if stats and stats["video_in"] >= 20 and stats["audio_in"] >= 50 and stats["audio_out"] >= 50:
        return dict(stats)
    return None
