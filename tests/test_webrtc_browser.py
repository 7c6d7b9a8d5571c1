"""The /call page and the console softphone in headless Chromium, without Asterisk: the page
in each language, the PWA parts, and each failure a citizen can meet (camera or microphone
permission denied, no camera, closed now, no counsellor, the call service down), each with
its message and the chat as the alternative. Chromium's camera and microphone are files
made here with ffmpeg (tests/support/webrtc.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from playwright import async_api as playwright_api

from ivr.ami.models import AgentState
from ivr.config import Settings
from ivr.languages import load_languages
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console
from tests.support.waiting import page_holds
from tests.support.webrtc import BASE_ARGS, CHROMIUM, FakeMedia, make_fake_media

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> FakeMedia:
    return make_fake_media(tmp_path_factory.mktemp("media"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def playwright() -> AsyncIterator[Any]:
    assert shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM} (make services installs Debian's chromium)"
    async with playwright_api.async_playwright() as p:
        yield p


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def with_devices(playwright: Any, media: FakeMedia) -> AsyncIterator[Any]:
    """Chromium whose camera and microphone are the files."""
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=media.chromium_args())
    try:
        yield browser
    finally:
        await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def without_devices(playwright: Any) -> AsyncIterator[Any]:
    """Chromium on a machine with no camera and no microphone at all."""
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS)
    try:
        yield browser
    finally:
        await browser.close()


def open_all_day(settings: Settings, hours: str = "always") -> None:
    path = settings.queues_dir / "queues.yaml"
    data = yaml.safe_load(path.read_text())
    data["queues"]["sign-video"]["hours"] = hours
    if hours == "never":
        data["schedules"]["never"] = {"week": {}}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


@pytest_asyncio.fixture(loop_scope="module")
async def site(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    prepare_settings(settings, tmp_path)
    settings.webrtc.enabled = True
    settings.webrtc.softphone_agents = ["park.soyeon"]
    open_all_day(settings)
    async with serve_console(settings) as console:
        yield console


async def video_agent_logged_in(console: Console) -> None:
    async with console.ctx.db.transaction() as session:
        session.add(AgentState(username="park.soyeon", extension="agent1003", logged_in=True,
                               queues={"sign-video": 1}, state="available"))


async def new_page(browser: Any, console: Console, grant: bool, lang: str = "ko") -> Any:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale=lang)  # a phone
    if grant:
        await context.grant_permissions(["camera", "microphone"], origin=console.url)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    await page.goto(f"{console.url}/call?lang={lang}")
    return page


async def message_key(page: Any) -> str:
    await page.wait_for_selector("#message:not([hidden])")
    return str(await page.get_attribute("#message", "data-key"))


async def test_the_page_speaks_each_language_and_is_an_installable_app(site: Console, with_devices: Any) -> None:
    registry = load_languages()
    assert registry.page_languages == ("ko", "en", "zh", "ja", "vi", "mn")
    for lang in registry.page_languages:
        page = await new_page(with_devices, site, grant=False, lang=lang)
        texts = registry.page_texts(lang)
        assert await page.get_attribute("html", "lang") == lang
        assert (await page.inner_text("#btn-video")).strip() == texts["video_call"]
        assert (await page.inner_text("#btn-voice")).strip() == texts["voice_call"]
        assert (await page.inner_text("#link-chat")).strip() == texts["chat"]
        assert await page.get_attribute("#link-chat", "href") == f"/chat?lang={lang}"
        await page.context.close()
    zh = registry.page_texts("zh")  # the labels in Chinese, the messages its fallback's (English)
    assert zh["video_call"] == "手语视频咨询" and zh["err_no_camera"] == registry.page_texts("en")["err_no_camera"]
    page = await new_page(with_devices, site, grant=False)
    manifest = await page.evaluate("fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())")
    assert manifest["display"] == "standalone" and manifest["start_url"] == "/call?lang=ko" and manifest["icons"]
    scope = await page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == f"{site.url}/call"
    assert await page.evaluate("typeof JsSIP.UA") == "function"  # served by the app, not a CDN
    assert page.js_errors == []
    await page.context.close()


async def test_microphone_permission_denied(site: Console, with_devices: Any) -> None:
    page = await new_page(with_devices, site, grant=False, lang="en")
    await page.click("#btn-voice")
    assert await message_key(page) == "err_permission"
    assert "denied" in await page.inner_text("#message")
    assert await page.is_visible("#alt-chat") and not await page.is_visible("#call")
    await page.context.close()


async def test_no_camera(site: Console, without_devices: Any) -> None:
    await video_agent_logged_in(site)
    page = await new_page(without_devices, site, grant=True)
    await page.click("#btn-video")
    assert await message_key(page) == "err_no_camera"
    assert load_languages().page_texts("ko")["err_no_camera"] == await page.inner_text("#message")
    assert await page.is_visible("#alt-chat")
    await page.context.close()


async def test_no_counsellor_logged_in_for_video(site: Console, with_devices: Any) -> None:
    page = await new_page(with_devices, site, grant=True)
    await page.click("#btn-video")
    assert await message_key(page) == "err_no_agent"
    await page.context.close()


async def test_closed_now(settings: Settings, tmp_path: Path, with_devices: Any) -> None:
    prepare_settings(settings, tmp_path)
    settings.webrtc.enabled = True
    open_all_day(settings, "never")
    async with serve_console(settings) as console:
        await video_agent_logged_in(console)
        page = await new_page(with_devices, console, grant=True, lang="en")
        await page.click("#btn-video")
        assert await message_key(page) == "err_closed"
        await page.context.close()


async def test_call_service_down_releases_the_camera(site: Console, with_devices: Any) -> None:
    """Asterisk unreachable: the credential cannot be set, the page says so and stops the camera."""
    await video_agent_logged_in(site)
    page = await new_page(with_devices, site, grant=True, lang="en")
    await page.evaluate("""() => { window.liveTracks = [];
        const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
        navigator.mediaDevices.getUserMedia = async (c) => { const s = await gum(c); window.liveTracks.push(...s.getTracks()); return s; }; }""")
    await page.click("#btn-video")
    assert await message_key(page) == "err_unavailable"
    states = await page.evaluate("window.liveTracks.map(t => t.kind + ':' + t.readyState)")
    assert sorted(states) == ["audio:ended", "video:ended"]
    await page.context.close()


async def test_softphone_is_offered_only_to_softphone_agents(site: Console, with_devices: Any) -> None:
    from sqlalchemy import update

    from ivr.db.models import User

    async with site.ctx.db.transaction() as session:  # kim.minji is an agent without a softphone
        await session.execute(update(User).where(User.username == "kim.minji").values(language="en"))
    context = await with_devices.new_context()
    page = await context.new_page()
    await page.goto(f"{site.url}/login?next=/console/agent")
    await page.fill("input[name=username]", "kim.minji")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.url}/console/agent")
    await page.wait_for_selector("#softphone-card[data-enabled=no]")
    assert "No browser phone" in await page.inner_text("#sp-note")
    reply = await page.evaluate("fetch('/api/console/softphone').then(r => r.json())")
    assert reply == {"enabled": False}
    await context.close()


async def test_texts_have_korean_and_english_for_every_key() -> None:
    registry = load_languages()
    for code in ("ko", "en"):
        page = registry.languages[code].page
        assert page is not None and page.missing() == [], code
    assert json.dumps(registry.page_texts("mn"), ensure_ascii=False).count("Дохионы") == 1


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    import subprocess

    path = tmp_path / "lamp.png"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:duration=1",
                    "-frames:v", "1", str(path)], check=True)
    return path


async def test_report_a_problem_with_a_photo_then_check_it_by_number(site: Console, with_devices: Any, photo: Path) -> None:
    from sqlalchemy import select

    from ivr.open311.models import ServiceRequest

    page = await new_page(with_devices, site, grant=False, lang="en")
    first_token = await page.get_attribute("body", "data-token")
    await page.click("#btn-report")
    await page.wait_for_selector("#report-service option[value=street_light]", state="attached")
    # the services in the page's language (services.json?lang=en: the registry's English names)
    assert await page.inner_text("#report-service option[value=street_light]") == "street light report"
    await page.select_option("#report-service", "street_light")
    await page.fill("#report-description", "The lamp in front of 12 Sejong-daero is out")
    await page.fill("#report-address", "12 Sejong-daero, Jung-gu")
    await page.set_input_files("#report-photo", str(photo))
    await page.click("#report-form button[type=submit]")
    await page.wait_for_selector("#report-result[data-ok=true]")
    number = (await page.inner_text("#report-result")).rsplit(" ", 1)[-1]
    async with site.ctx.db.session() as session:
        sr = (await session.execute(select(ServiceRequest).where(ServiceRequest.service_request_id == number))).scalar_one()
    assert sr.source == "web" and sr.service_code == "street_light" and sr.media_content_type == "image/png"
    stored = site.ctx.settings.data_dir / str(sr.media_path)
    assert await asyncio.to_thread(stored.read_bytes) == await asyncio.to_thread(photo.read_bytes)
    # the token the page posted is spent: posting it again is refused as a replay
    spent = await page.evaluate("""async (token) => {
        const form = new FormData(); form.set('token', token); form.set('service_code', 'street_light');
        form.set('description', 'again'); form.set('address_string', 'x');
        const r = await fetch('/api/webcall/report', {method: 'POST', body: form}); return [r.status, (await r.json()).reason];
    }""", first_token)
    assert spent == [409, "replayed"]
    await page.click("#btn-track")
    await page.fill("#track-number", number)
    await page.click("#track-form button[type=submit]")
    await page.wait_for_selector("#track-result dd")
    assert "open" in await page.inner_text("#track-result")
    await page.fill("#track-number", "0000000000")
    await page.click("#track-form button[type=submit]")
    await page.locator("#track-result", has_text="No request has that number").wait_for()
    assert page.js_errors == []
    await page.context.close()


async def test_admin_sees_and_edits_the_webrtc_settings_and_who_takes_video(site: Console, with_devices: Any) -> None:
    context = await with_devices.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{site.url}/login?next=/console/admin")
    await page.fill("input[name=username]", "super1")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.url}/console/admin")
    await page.wait_for_selector("#webrtc-card[data-loaded=yes]")
    park = "#webrtc-agents tr[data-agent='park.soyeon']"
    kim = "#webrtc-agents tr[data-agent='kim.minji']"
    assert "sign-video" in await page.inner_text(park) and "sign-video" not in await page.inner_text(kim)
    assert await page.is_checked(f"{park} .takes-video") and await page.is_checked(f"{park} .softphone")
    assert not await page.is_checked(f"{kim} .takes-video") and not await page.is_checked(f"{kim} .softphone")
    settings = await page.inner_text("#webrtc-settings")
    assert "ws://127.0.0.1:8088/ws" in settings and "secret" not in settings.lower()
    assert await page.input_value("#webrtc-http_port") == "8088"
    assert await page.get_attribute("#webrtc-turn_secret", "placeholder") == "Not set"  # super1 reads English

    # A value the form lets through but the server refuses as a whole: TLS without certificate.
    await page.check("#webrtc-tls")
    await page.click("#webrtc-save")
    await page_holds(page, "document.getElementById('webrtc-result').dataset.state === 'invalid'")
    assert "tls_cert_file" in await page.inner_text("#webrtc-result")
    etc = site.ctx.settings.asterisk.config_dir
    assert not (site.ctx.settings.data_dir / "webrtc.yaml").exists()

    # The edit: another port, a STUN server, a TURN server with its shared secret, Kim takes video.
    await page.uncheck("#webrtc-tls")
    await page.fill("#webrtc-http_port", "8188")
    await page.fill("#webrtc-stun_server", "stun.example.org:3478")
    await page.fill("#webrtc-turn_server", "turn.example.org:3478")
    await page.fill("#webrtc-turn_secret", "browser-edit-turn-secret-42")
    await page.check(f"{kim} .takes-video")
    await page.fill("#webrtc-comment", "STUN/TURN 개통")
    await page.click("#webrtc-save")
    await page_holds(page, "document.getElementById('webrtc-result').dataset.state === 'saved'", timeout=30)
    http, rtp = (etc / "http.conf").read_text(), (etc / "rtp.conf").read_text()
    assert "bindport = 8188" in http and "stunaddr = stun.example.org:3478" in rtp
    assert "sign-video: 3" in (site.ctx.settings.queues_dir / "agents.yaml").read_text()
    # The form shows what was saved; the secret only as "set".
    assert await page.input_value("#webrtc-http_port") == "8188"
    assert await page.input_value("#webrtc-turn_secret") == ""
    assert await page.get_attribute("#webrtc-turn_secret", "placeholder") == "Set (type to replace, leave empty to keep)"
    assert "browser-edit-turn-secret-42" not in await page.content()
    assert await page.is_checked(f"{kim} .takes-video") and "sign-video" in await page.inner_text(kim)
    assert "ws://127.0.0.1:8188/ws" in await page.inner_text("#webrtc-settings")
    assert errors == []
    await context.close()
    # an agent may neither read nor edit them
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(f"{site.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
            assert r.status == 200
        async with s.get(f"{site.url}/api/console/admin/webrtc") as r:
            assert r.status == 403
