"""Browser calls through a real Asterisk, citizen's and agent's pages in headless Chromium.

- A sign-language video call: /call -> credential (AMI DBPut into astdb) -> SIP over
  WebSocket -> dasan-web-video -> sign-video queue -> the agent's console softphone
  (registered with JsSIP over WebSocket). ``getStats()`` shows video frames decoded on both
  sides (the agent's at 640x480 or more) and audio packets both ways; then the contact row
  (channel ``video``, queue, agent) and that the credential cannot start a second call.
- The softphone's hold, mute and blind transfer to another queue.
- A credential past its expiry is refused by the dialplan.
- A browser voice call through the IVR: keypad digits (RFC 4733) choose Japanese and a
  counsellor, and the call reaches the ``ja`` queue and the agent; the contact is ``web_voice``.

Runs when an ``asterisk`` binary (built with res_srtp, res_http_websocket and
res_pjsip_transport_websocket) is on PATH; Asterisk runs from a temporary directory on
loopback ports, as in tests/test_asterisk_real.py. Chromium's camera and microphone are files.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from playwright import async_api as playwright_api
from sqlalchemy import select

from ivr import services
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db.models import Agent, AuditLog, Contact, Recording, User
from ivr.recordings.store import sha256_file
from ivr.web.app import create_app
from ivr.web.auth import hash_password
from ivr.webrtc.asterisk_push import push_credential
from ivr.webrtc.credentials import Credential
from tests.support.webrtc import CHROMIUM, make_fake_media
from tests.test_asterisk_real import (
    ASTERISK,
    MODULE_DIRS,
    Pbx,
    _prompt,
    configure,
    free_port,
    start_pbx,
    stop_pbx,
)

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 22 (with libsrtp2-dev at build time) to run the WebRTC call tests"),
    pytest.mark.timeout(240),
]

PASSWORD = "softphone-agent-pw-9"
# Chromium hides host candidates behind mDNS names Asterisk cannot resolve.
ICE_ARGS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]
T = TypeVar("T")

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

# A call with a given credential, outside the page's UI: how did Asterisk answer?
RAW_CALL = """(c) => new Promise((resolve) => {
    const ua = new JsSIP.UA({sockets: [new JsSIP.WebSocketInterface(c.ws_url)], uri: c.uri,
        authorization_user: c.username, password: c.password, register: false});
    ua.start();
    const s = ua.call(c.target, {mediaConstraints: {audio: true, video: false}});
    s.on('confirmed', () => { resolve('confirmed'); s.terminate(); ua.stop(); });
    s.on('failed', (e) => { resolve('failed:' + e.cause); ua.stop(); });
})"""


def _need_webrtc_modules() -> None:
    moddir = next((d for d in MODULE_DIRS if (d / "app_queue.so").exists()), None)
    missing = [m for m in ("res_srtp.so", "res_http_websocket.so", "res_pjsip_transport_websocket.so")
               if moddir is None or not (moddir / m).exists()]
    if missing:
        pytest.skip(f"this Asterisk was built without {', '.join(missing)} (libsrtp2-dev missing at ./configure?)")


async def wait_until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 40.0) -> T:
    """Poll ``probe()`` until it returns something truthy (the event we wait for)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@dataclass
class Stack:
    ctx: AppContext
    url: str
    pbx: Pbx
    browser: Any
    errors: list[str]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The menus' prompts in Korean and Japanese (espeak-ng placeholders), made once."""
    from ivr.engine.runtime import load_checked
    from ivr.prompts import synthesize

    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.fail("espeak-ng and sox are needed to make the IVR's prompts (installable: make debs-run)")
    sounds = tmp_path_factory.mktemp("sounds")
    defaults = Settings()
    menus, _queues = load_checked(defaults.agi.menus_dir, defaults.queues_dir)
    asyncio.run(synthesize(menus, sounds, ["ko", "ja"]))
    for lang, text in (("ko", "통화 내용이 녹음됩니다."), ("ja", "ろくおんします")):
        _prompt(sounds / lang / "dasan" / "recording-consent.wav", text, lang)
    # The language menu names every language in its own: a short tone stands in for the others
    # (a missing prompt makes STREAM FILE fail, and Asterisk then reports AGISTATUS=FAILURE).
    for lang in ("en", "zh", "vi", "mn"):
        (sounds / lang / "dasan").mkdir(parents=True)
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(sounds / lang / "dasan" / f"lang-{lang}.wav"),
                        "synth", "0.3", "sine", "440"], check=True)
    return sounds


@pytest_asyncio.fixture
async def stack(settings: Settings, tmp_path: Path, prompts: Path) -> AsyncIterator[Stack]:
    """Asterisk; the IVR, the AMI bridge and the web app on one context; Chromium."""
    _need_webrtc_modules()
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM}"
    configure(settings, tmp_path)
    w = settings.webrtc
    w.enabled, w.http_port = True, free_port()
    w.softphone_agents = ["park.soyeon"]
    w.video_slots = w.voice_slots = 2
    queues = settings.queues_dir / "queues.yaml"
    data = yaml.safe_load(queues.read_text())
    for name in ("sign-video", "ja"):
        data["queues"][name]["hours"] = "always"
    queues.write_text(yaml.safe_dump(data, allow_unicode=True))
    pbx = start_pbx(settings, tmp_path, prompts / "ko")
    for lang in ("en", "zh", "ja", "vi", "mn"):
        (tmp_path / "data" / "sounds" / lang).symlink_to(prompts / lang)
    ctx = await AppContext.create(settings)
    ivr, bridge = services.build("agi", ctx), services.build("ami", ctx)
    runner = web.AppRunner(create_app(ctx), access_log=None)
    media = make_fake_media(tmp_path / "media", seconds=6)
    errors: list[str] = []
    try:
        async with ctx.db.transaction() as session:
            session.add(User(username="park.soyeon", display_name="박소연", password_hash=hash_password(PASSWORD),
                             role="agent", language="en"))
            session.add(User(username="review1", display_name="review1", password_hash=hash_password(PASSWORD),
                             role="reviewer", language="en"))
        await ivr.start()
        await bridge.start()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=[*media.chromium_args(), *ICE_ARGS])
            try:
                yield Stack(ctx, f"http://{host}:{port}", pbx, browser, errors)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
        await bridge.stop()
        await ivr.stop()
        await ctx.close()
        stop_pbx(pbx)
    assert errors == [], errors  # no script error on any page


async def new_page(s: Stack, viewport: dict[str, int], camera: bool = True) -> Any:
    context = await s.browser.new_context(viewport=viewport)
    await context.grant_permissions(["camera", "microphone"] if camera else ["microphone"], origin=s.url)
    context.set_default_timeout(30_000)
    page = await context.new_page()
    page.on("pageerror", lambda exc: s.errors.append(str(exc)))
    return page


async def agent_ready(s: Stack, camera: bool = True) -> Any:
    """park.soyeon signs in, the softphone registers, Ready puts her in her queues."""
    agent = await new_page(s, {"width": 1400, "height": 1000}, camera)
    await agent.goto(f"{s.url}/login?next=/console/agent")
    await agent.fill("input[name=username]", "park.soyeon")
    await agent.fill("input[name=password]", PASSWORD)
    await agent.click("button[type=submit]")
    await agent.wait_for_url(f"{s.url}/console/agent")
    await agent.wait_for_selector("#sp-state[data-state=sp_registered]")
    assert "agent1003" in s.pbx.cli("pjsip show contacts")
    await agent.wait_for_selector("body[data-ws='open']")
    await agent.click("#btn-ready")
    await agent.wait_for_selector("#agent-state[data-state='available']")
    assert "PJSIP/agent1003" in s.pbx.cli("queue show sign-video")
    return agent


async def citizen_page(s: Stack, credentials: list[dict[str, Any]]) -> Any:
    citizen = await new_page(s, {"width": 390, "height": 844})

    async def keep(response: Any) -> None:
        if response.url.endswith("/api/webcall/credentials") and response.ok:
            credentials.append(await response.json())

    citizen.on("response", lambda r: asyncio.ensure_future(keep(r)))
    await citizen.goto(f"{s.url}/call?lang=ko")
    return citizen


async def flowing(page: Any, side: str, video: bool = True, min_width: int = 0) -> dict[str, Any] | None:
    """The page's media stats once audio flows both ways (and video comes in), else None.
    ``min_width``: and the video decoded at least that wide. A browser starts sending a camera
    at what its first bandwidth estimate allows and steps up to the camera's size as the
    estimate grows (slower on a busy machine), so a size is waited for, not read off once."""
    stats = await page.evaluate(STATS, side)
    if stats and stats["audio_in"] >= 50 and stats["audio_out"] >= 50 and (not video or stats["video_in"] >= 20) \
            and stats["width"] >= min_width:
        return dict(stats)
    return None


async def video_call_answered(s: Stack, agent: Any, what: str = "media at the agent",
                              min_width: int = 0) -> tuple[Any, dict[str, Any]]:
    """A citizen's page starts a video call and ``agent`` answers it when it rings; the citizen's
    page and what ``agent`` receives once media flows (waited for as ``what``)."""
    citizen = await citizen_page(s, [])
    await citizen.click("#btn-video")
    await agent.wait_for_selector("#sp-state[data-state=sp_ringing]")
    await agent.click("#sp-answer")
    return citizen, await wait_until(lambda: flowing(agent, "agent", min_width=min_width), what)


async def contact_of(ctx: AppContext, channel: str) -> Contact | None:
    async with ctx.db.session() as session:
        row = (await session.execute(select(Contact).where(Contact.channel == channel))).scalar_one_or_none()
    return row if row is not None and row.agent_id is not None else None


async def test_sign_language_video_call_citizen_to_agent_browser(stack: Stack) -> None:
    s = stack
    agent = await agent_ready(s)
    uploads: list[tuple[int, str]] = []
    agent.on("response", lambda r: uploads.append((r.status, r.url)) if "/video/" in r.url else None)
    credentials: list[dict[str, Any]] = []
    citizen = await citizen_page(s, credentials)
    await citizen.click("#btn-video")
    await agent.wait_for_selector("#sp-state[data-state=sp_ringing]")
    # queued and ringing, nobody there yet: the citizen is told to wait
    assert await citizen.get_attribute("#call-state", "data-key") == "waiting"
    await agent.click("#sp-answer")
    await agent.wait_for_selector("#sp-state[data-state=sp_in_call]")

    # media flows both ways, video decoded on both sides
    agent_stats = await wait_until(lambda: flowing(agent, "agent", min_width=640),
                                   "video (640 wide or more) and audio at the agent")
    citizen_stats = await wait_until(lambda: flowing(citizen, "citizen"), "video and audio at the citizen")
    print(f"agent sees {agent_stats}; citizen sees {citizen_stats}")  # shown with -s
    assert agent_stats["width"] >= 640 and agent_stats["height"] >= 480, agent_stats
    assert agent_stats["video_out"] > 0 and citizen_stats["video_out"] > 0  # both cameras sent
    await citizen.wait_for_selector("#call-state[data-key=in_call]")
    box = await agent.eval_on_selector("#sp-remote", "v => [v.clientWidth, v.clientHeight]")
    assert box[0] >= 640 and box[1] >= 480
    channels = s.pbx.cli("core show channels concise")
    assert "PJSIP/webvideo-" in channels and "PJSIP/agent1003" in channels

    # the agent hangs up; the contact is a video contact of the sign-video queue
    await agent.click("#sp-hangup")
    await citizen.wait_for_selector("#choices:not([hidden])")
    assert await citizen.get_attribute("#message", "data-key") == "ended"
    await agent.wait_for_selector("#sp-state[data-state=sp_registered]")
    row = await wait_until(lambda: contact_of(s.ctx, "video"), "the video contact with its agent")
    assert row.queue == "sign-video" and row.citizen_id is None
    async with s.ctx.db.session() as session:
        agent_row = await session.get(Agent, row.agent_id)
    assert agent_row is not None and agent_row.username == "park.soyeon"

    # the survey, on screen (a deaf citizen cannot follow the spoken one)
    await citizen.wait_for_selector("#survey:not([hidden])")
    await citizen.click("#survey button[data-score='4']")
    await citizen.wait_for_selector("#survey-result[data-ok=true]")
    async with s.ctx.db.session() as session:
        rated = await session.get(Contact, row.id)
    assert rated is not None and rated.satisfaction == 4

    # the agent's browser recorded the sign-language video and filed it with its checksum
    await agent.wait_for_selector("#softphone-card[data-recording]")
    recorded = await agent.get_attribute("#softphone-card", "data-recording")
    assert recorded is not None and recorded.isdigit(), (recorded, await agent.inner_text("#sp-note"), uploads)
    rec_id = int(recorded)
    async with s.ctx.db.session() as session:
        rec = await session.get(Recording, rec_id)
        audited = (await session.execute(select(AuditLog).where(AuditLog.action == "video_recorded"))).scalar_one()
    assert rec is not None and rec.contact_id == row.id and rec.format == "webm" and rec.integrity == "ok"
    video_file = s.ctx.settings.recordings.dir / rec.path
    assert rec.sha256 == await asyncio.to_thread(sha256_file, video_file)
    assert audited.target == f"recording:{rec_id}" and audited.actor == "park.soyeon"
    streams = await asyncio.to_thread(_probe_streams, video_file)
    assert {"codec_type": "video", "width": 640, "height": 480} in streams, streams
    assert any(st["codec_type"] == "audio" for st in streams), streams
    # the reviewer's player shows it as a video
    player = await new_page(s, {"width": 1280, "height": 900})
    await player.goto(f"{s.url}/login?next=/console/reviewer/recordings/{rec_id}")
    await player.fill("input[name=username]", "review1")
    await player.fill("input[name=password]", PASSWORD)
    await player.click("button[type=submit]")
    await player.wait_for_url(f"{s.url}/console/reviewer/recordings/{rec_id}")
    await player.wait_for_selector("video#audio")
    size = await player.eval_on_selector("video#audio", """v => new Promise((resolve) => {
        const done = () => resolve([v.videoWidth, v.videoHeight]);
        if (v.readyState >= 1) done(); else v.addEventListener('loadedmetadata', done);
    })""")
    assert size == [640, 480]

    # the credential was good for one call: the same password cannot start another
    assert len(credentials) == 1
    outcome = await citizen.evaluate(RAW_CALL, credentials[0])
    assert outcome.startswith("failed:"), outcome
    assert "Error to authenticate" in s.pbx.console()


async def test_softphone_hold_mute_and_blind_transfer_to_a_queue(stack: Stack) -> None:
    s = stack
    agent = await agent_ready(s)
    citizen, _ = await video_call_answered(s, agent)
    await agent.click("#sp-mute")
    assert await agent.evaluate("window.dasanSoftphone.session.isMuted().audio") is True
    assert await agent.get_attribute("#sp-mute", "aria-pressed") == "true"
    await agent.click("#sp-mute")
    assert await agent.evaluate("window.dasanSoftphone.session.isMuted().audio") is False
    await agent.click("#sp-hold")
    await agent.wait_for_selector("#sp-state[data-state=sp_on_hold]")
    await agent.click("#sp-hold")
    await agent.wait_for_selector("#sp-state[data-state=sp_in_call]")
    # after the hold, the citizen's video still arrives
    before = (await agent.evaluate(STATS, "agent"))["video_in"]
    await wait_until(lambda: _more_frames(agent, before + 10), "video after the hold")
    # blind transfer: the citizen waits in the ja queue, the agent is free again
    await agent.select_option("#sp-transfer-queue", "ja")
    await agent.click("#sp-transfer")
    await agent.wait_for_selector("#sp-state[data-state=sp_registered]")

    async def citizen_in_ja() -> bool:
        return "PJSIP/webvideo-" in s.pbx.cli("queue show ja")

    await wait_until(citizen_in_ja, "the citizen waiting in the ja queue")
    assert await citizen.is_visible("#call")  # still in the call, now waiting
    await citizen.click("#btn-hangup")
    await citizen.wait_for_selector("#choices:not([hidden])")


async def test_an_admin_edit_is_applied_while_a_video_call_goes_on(stack: Stack) -> None:
    """The admin console's WebRTC edit (a STUN server, a second softphone agent) is rendered and
    reloaded into the running Asterisk (res_rtp_asterisk, res_pjsip) while a video call is up:
    the call stays and the citizen's signing keeps arriving."""
    s = stack
    async with s.ctx.db.transaction() as session:
        session.add(User(username="super1", display_name="super1", password_hash=hash_password(PASSWORD),
                         role="supervisor", language="en"))
    agent = await agent_ready(s)
    citizen, _ = await video_call_answered(s, agent)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{s.url}/api/login", json={"username": "super1", "password": PASSWORD}) as r:
            csrf = (await r.json())["csrf_token"]
        async with http.post(f"{s.url}/api/console/admin/webrtc", headers={"X-CSRF-Token": csrf}, json={
                "stun_server": "127.0.0.1:3478", "softphone_agents": ["park.soyeon", "kim.minji"],
                "comment": "during a call"}) as r:
            status, body = r.status, await r.json()
    assert status == 200 and body["status"] == "applied", body
    assert "res_rtp_asterisk.so" in body["result"] and "res_pjsip.so" in body["result"], body
    assert "stunaddr = 127.0.0.1:3478" in (s.ctx.settings.asterisk.config_dir / "rtp.conf").read_text()
    kim = [line.split(":", 1) for line in s.pbx.cli("pjsip show endpoint agent1001").splitlines() if ":" in line]
    assert ["yes"] == [value.strip() for key, value in kim if key.strip() == "webrtc"]  # the reload took it
    before = (await agent.evaluate(STATS, "agent"))["video_in"]
    await wait_until(lambda: _more_frames(agent, before + 15), "video after the reload")
    assert await agent.get_attribute("#sp-state", "data-state") == "sp_in_call"
    assert "PJSIP/webvideo-" in s.pbx.cli("core show channels")
    await citizen.click("#btn-hangup")
    await citizen.wait_for_selector("#choices:not([hidden])")


async def _more_frames(page: Any, at_least: int) -> bool:
    return bool((await page.evaluate(STATS, "agent"))["video_in"] >= at_least)


async def test_an_expired_credential_is_refused_by_the_dialplan(stack: Stack) -> None:
    s = stack
    now = time.time()
    credential = Credential("voice", "webvoice-002", "an-expired-one-time-password-0123456789",
                            issued_at=now - 300, expires_at=now - 60)
    await push_credential(s.ctx.settings, credential)  # as if minted five minutes ago
    citizen = await citizen_page(s, [])
    w = s.ctx.settings.webrtc
    outcome = await citizen.evaluate(RAW_CALL, {
        "ws_url": f"ws://127.0.0.1:{w.http_port}/ws", "uri": f"sip:webvoice-002@{w.sip_domain}",
        "username": "webvoice-002", "password": credential.password, "target": f"sip:ivr@{w.sip_domain}"})
    assert outcome.startswith("failed:"), outcome
    assert "browser call on webvoice-002 refused: credential expired" in s.pbx.console()
    # and it is gone: the password was removed as the call was tried
    assert "webvoice-002" not in s.pbx.cli("database show dasan-webrtc")


async def test_browser_voice_call_with_keypad_reaches_a_language_queue(stack: Stack) -> None:
    s = stack
    agent = await agent_ready(s)
    citizen = await citizen_page(s, [])
    await citizen.click("#btn-voice")
    await citizen.wait_for_selector("#call-state[data-key=in_call]")
    await citizen.click("#btn-keypad")

    async def contact_path(part: str) -> Contact | None:
        async with s.ctx.db.session() as session:
            row = (await session.execute(select(Contact).where(Contact.channel == "web_voice"))).scalar_one_or_none()
        return row if row is not None and part in (row.ivr_path or "") else None

    async def ivr_started() -> Contact | None:
        async with s.ctx.db.session() as session:
            return (await session.execute(select(Contact).where(Contact.channel == "web_voice"))).scalar_one_or_none()

    await wait_until(ivr_started, "the IVR opening the browser call's contact")
    await citizen.click("#keypad button[data-digit='9']")  # other languages
    await wait_until(lambda: contact_path("languages"), "the language menu")
    await citizen.click("#keypad button[data-digit='3']")  # 日本語

    async def japanese() -> Contact | None:
        async with s.ctx.db.session() as session:
            row = (await session.execute(select(Contact).where(Contact.channel == "web_voice"))).scalar_one_or_none()
        return row if row is not None and row.language == "ja" else None

    await wait_until(japanese, "the call continuing in Japanese")
    await citizen.click("#keypad button[data-digit='0']")  # a counsellor
    await agent.wait_for_selector("#sp-state[data-state=sp_ringing]", timeout=60_000)
    await agent.click("#sp-answer")
    await wait_until(lambda: flowing(agent, "agent", video=False), "audio at the agent")
    await wait_until(lambda: flowing(citizen, "citizen", video=False), "audio at the citizen")
    await citizen.click("#btn-hangup")
    await agent.wait_for_selector("#sp-state[data-state=sp_registered]")
    row = await wait_until(lambda: contact_of(s.ctx, "web_voice"), "the web_voice contact with its agent")
    assert row.queue == "ja" and row.language == "ja" and row.citizen_id is None


def _probe_streams(path: Path) -> list[dict[str, Any]]:
    import json

    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,width,height", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return [{k: v for k, v in st.items() if k in ("codec_type", "width", "height")} for st in json.loads(out)["streams"]]


async def test_an_agent_without_a_camera_still_sees_the_signing(stack: Stack) -> None:
    """asterisk/asterisk#1173: a callee answering a video offer with ``m=video 0`` gets the call
    dropped (BYE, cause 58). The softphone never declines video: without a camera it answers
    ``recvonly``, and the citizen's signing still arrives. Then the citizen's network drops."""
    s = stack
    agent = await agent_ready(s, camera=False)  # the browser refuses the camera
    citizen, stats = await video_call_answered(s, agent, "the citizen's video at an agent without a camera",
                                               min_width=640)
    assert stats["video_out"] == 0 and stats["width"] >= 640
    answer = await agent.evaluate("window.dasanSoftphone.session.connection.localDescription.sdp")
    video = answer[answer.index("m=video"):]
    assert not video.startswith("m=video 0 ") and "a=recvonly" in video
    assert "Camera or microphone unavailable" in await agent.inner_text("#sp-note")
    await citizen.wait_for_selector("#call-state[data-key=in_call]")
    assert "cause=58" not in s.pbx.console() and "PJSIP/webvideo-" in s.pbx.cli("core show channels concise")
    # the citizen's network drops: the page says so, points to the chat and ends its side
    await citizen.context.set_offline(True)
    await citizen.wait_for_selector("#message[data-key=err_network]")
    assert await citizen.is_visible("#alt-chat") and not await citizen.is_visible("#call")
