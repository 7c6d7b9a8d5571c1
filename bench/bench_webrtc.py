"""Browser video calls through a real Asterisk: set-up times and Asterisk's CPU per call.

The whole path of a citizen's sign-language video call, as in tests/test_webrtc_asterisk.py:
headless Chromium (camera and microphone are ffmpeg-made files, 640x480 at 15 fps) opens
/call and clicks "video call"; the web service mints a credential into Asterisk's astdb over
AMI; JsSIP sends the INVITE over WebSocket; the dialplan queues the call on ``sign-video``;
the agent's console softphone (JsSIP, registered) rings and answers at once.

Measured with the browser's clock (both pages share it), per call:
- click -> ring: from the citizen's click to the agent's softphone seeing the INVITE;
- click -> first frame: to the first citizen video frame shown in the agent's console
  (``requestVideoFrameCallback``), which includes the answer and ICE/DTLS.

Peer: the same camera in two RTCPeerConnections of one page that exchange their SDP
directly (no SIP, no Asterisk): what WebRTC alone needs on this machine to show a first frame.

Asterisk's CPU (``/proc/<pid>/stat``) while one call is up for ``BENCH_WEBRTC_HOLD_SECONDS``,
against the same time idle: the cost of DTLS-SRTP and relaying VP8 without transcoding.
Skipped (with a note) when no ``asterisk`` binary is installed. Knobs: ``BENCH_WEBRTC_CALLS``
(20), ``BENCH_WEBRTC_HOLD_SECONDS`` (10).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import report
from bench.measure import cpu_seconds, percentile

QUICK = os.environ.get("BENCH_QUICK") == "1"
CALLS = int(os.environ.get("BENCH_WEBRTC_CALLS", "5" if QUICK else "20"))
HOLD = float(os.environ.get("BENCH_WEBRTC_HOLD_SECONDS", "5" if QUICK else "10"))
PASSWORD = "bench-softphone-pw-1"
TITLE = "Browser video calls (WebRTC through Asterisk)"

# Installed in the agent's page once: stamp the ring and the first shown frame of each call,
# and answer at once (what an agent waiting for the call does).
AGENT_HOOKS = """() => {
  const sp = window.dasanSoftphone, video = document.getElementById('sp-remote');
  sp.ua.on('newRTCSession', (e) => {
    if (e.originator !== 'remote') return;
    window.benchRing = Date.now();
    video.requestVideoFrameCallback(() => { window.benchFrame = Date.now(); });
    setTimeout(() => document.getElementById('sp-answer').click(), 0);
  });
}"""


async def _wait(page: Any, expression: str, timeout: float = 60.0) -> Any:
    """Poll a page expression (CSP forbids wait_for_function's eval) until truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"waited {timeout:.0f} s for {expression}")


async def _run(root: Path) -> None:
    import yaml
    from aiohttp import web
    from playwright import async_api as playwright_api

    from ivr import services
    from ivr.config import Settings
    from ivr.context import AppContext
    from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES
    from ivr.db.models import User
    from ivr.web.app import create_app
    from ivr.web.auth import hash_password
    from tests.support.webrtc import CHROMIUM, make_fake_media
    from tests.test_asterisk_real import configure, free_port, start_pbx, stop_pbx

    s = Settings()
    s.data_dir, s.recordings.dir = root / "var", root / "recordings"
    s.database.url = f"sqlite+aiosqlite:///{root / 'bench.db'}"
    s.web.secret_key = uuid.uuid4().hex * 2
    s.ami.secret = uuid.uuid4().hex
    s.queues_dir, s.agi.menus_dir = root / "queues", root / "menus"
    shutil.copytree(DEFAULT_QUEUES, s.queues_dir)
    shutil.copytree(DEFAULT_MENUS, s.agi.menus_dir)
    configure(s, root)
    s.webrtc.enabled, s.webrtc.http_port = True, free_port()
    s.webrtc.softphone_agents = ["park.soyeon"]
    # Every call of the run comes from one address, faster than a citizen would call: the
    # per-address limit (6 a minute) is not what is measured.
    s.webrtc.mint_per_minute = 10 * CALLS
    queues = s.queues_dir / "queues.yaml"
    data = yaml.safe_load(queues.read_text())
    # Calls follow each other at once: no after-call work between them (it would be measured
    # as set-up time), the agent is rung as soon as the call is queued.
    data["queues"]["sign-video"].update(hours="always", wrapup_seconds=0)
    queues.write_text(yaml.safe_dump(data, allow_unicode=True))
    (root / "prompts").mkdir()
    pbx = start_pbx(s, root, root / "prompts")
    ctx = await AppContext.create(s)
    bridge = services.build("ami", ctx)
    runner = web.AppRunner(create_app(ctx), access_log=None)
    media = make_fake_media(root / "media", seconds=10)
    try:
        async with ctx.db.transaction() as session:
            session.add(User(username="park.soyeon", display_name="park", password_hash=hash_password(PASSWORD),
                             role="agent", language="en"))
        await bridge.start()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                *media.chromium_args(), "--disable-features=WebRtcHideLocalIpsWithMdns"])
            try:
                await _calls(browser, url, pbx.proc.pid)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
        await bridge.stop()
        await ctx.close()
        stop_pbx(pbx)


async def _calls(browser: Any, url: str, asterisk_pid: int) -> None:
    agent_ctx = await browser.new_context()
    await agent_ctx.grant_permissions(["camera", "microphone"], origin=url)
    agent = await agent_ctx.new_page()
    await agent.goto(f"{url}/login?next=/console/agent")
    await agent.fill("input[name=username]", "park.soyeon")
    await agent.fill("input[name=password]", PASSWORD)
    await agent.click("button[type=submit]")
    await agent.wait_for_selector("#sp-state[data-state=sp_registered]", timeout=30_000)
    await agent.wait_for_selector("body[data-ws='open']")
    await agent.click("#btn-ready")
    await agent.wait_for_selector("#agent-state[data-state='available']", timeout=30_000)
    await agent.evaluate(AGENT_HOOKS)

    idle_before, idle_at = cpu_seconds(asterisk_pid), time.monotonic()
    await asyncio.sleep(HOLD)  # the idle baseline is a span of time, not a synchronisation
    idle = (cpu_seconds(asterisk_pid) - idle_before) / (time.monotonic() - idle_at)

    ring_ms: list[float] = []
    frame_ms: list[float] = []
    invite_ms: list[float] = []  # the citizen's page: checks, camera, credential, WebSocket, INVITE
    busy = 0.0
    for n in range(CALLS):
        citizen_ctx = await browser.new_context()
        await citizen_ctx.grant_permissions(["camera", "microphone"], origin=url)
        citizen = await citizen_ctx.new_page()
        await citizen.goto(f"{url}/call?lang=ko")
        await agent.evaluate("() => { window.benchRing = 0; window.benchFrame = 0; }")
        clicked = await citizen.evaluate("() => { const t = Date.now(); document.getElementById('btn-video').click(); return t; }")
        try:
            ring = await _wait(agent, "window.benchRing")
            frame = await _wait(agent, "window.benchFrame")
        except TimeoutError:
            said = await citizen.evaluate("document.getElementById('message').textContent")
            state = await agent.evaluate("document.getElementById('agent-state').dataset.state")
            raise TimeoutError(f"call {n + 1}: the citizen's page says {said!r}; the agent is {state!r}") from None
        marks = await citizen.evaluate("window.dasanCall.marks")
        invite_ms.append(marks.get("sending", clicked) - clicked)
        ring_ms.append(ring - clicked)
        frame_ms.append(frame - clicked)
        if n == 0:
            before, at = cpu_seconds(asterisk_pid), time.monotonic()
            await asyncio.sleep(HOLD)  # a call held up for a measured span
            busy = (cpu_seconds(asterisk_pid) - before) / (time.monotonic() - at)
        await agent.click("#sp-hangup")
        await agent.wait_for_selector("#sp-state[data-state=sp_registered]", timeout=30_000)
        await citizen.wait_for_selector("#choices:not([hidden])", timeout=30_000)
        await citizen_ctx.close()
        print(f"call {n + 1}/{CALLS}: ring {ring - clicked} ms, first frame {frame - clicked} ms", flush=True)

    peer_ms = await _direct_peer(browser, url)
    report.section(TITLE, __doc__ or "")
    report.table(["from the citizen's click", "p50 ms", "p99 ms", "calls"], [
        ("to the INVITE leaving the citizen's browser", percentile(invite_ms, 50), percentile(invite_ms, 99), len(invite_ms)),
        ("to the agent's ring", percentile(ring_ms, 50), percentile(ring_ms, 99), len(ring_ms)),
        ("to the first video frame at the agent", percentile(frame_ms, 50), percentile(frame_ms, 99), len(frame_ms)),
        ("peer: two browsers' peer connections joined directly, no SIP, no Asterisk: to the first frame",
         percentile(peer_ms, 50), percentile(peer_ms, 99), len(peer_ms)),
    ])
    report.table(["Asterisk", "% of one core"], [
        ("idle (agent registered)", 100 * idle),
        ("one video call up (VP8 640x480 15 fps each way + G.711, passed through)", 100 * busy),
        ("cost of the call", 100 * (busy - idle)),
    ])


# The peer: the same camera file, two RTCPeerConnections in one page exchanging their SDP
# directly; what WebRTC alone costs on this machine from "call" to the first frame shown.
DIRECT = """async () => {
  const t0 = Date.now();
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 480}});
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  stream.getTracks().forEach((t) => a.addTrack(t, stream));
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; document.body.append(video);
  const shown = new Promise((resolve) => video.requestVideoFrameCallback(() => resolve(Date.now())));
  b.ontrack = (e) => { if (e.track.kind === 'video') video.srcObject = new MediaStream([e.track]); };
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  const t1 = await shown;
  stream.getTracks().forEach((t) => t.stop()); a.close(); b.close(); video.remove();
  return t1 - t0;
}"""


async def _direct_peer(browser: Any, url: str) -> list[float]:
    context = await browser.new_context()
    await context.grant_permissions(["camera", "microphone"], origin=url)
    page = await context.new_page()
    await page.goto(f"{url}/call")
    times = [float(await page.evaluate(DIRECT)) for _ in range(CALLS)]
    await context.close()
    return times


def main() -> None:
    if shutil.which("asterisk") is None:
        report.section(TITLE)
        report.note("Not run: no `asterisk` binary on PATH (see docs/webrtc.md for the build).")
        return
    with tempfile.TemporaryDirectory(prefix="bench-webrtc-") as tmp:
        asyncio.run(_run(Path(tmp)))


if __name__ == "__main__":
    main()
