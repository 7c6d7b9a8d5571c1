"""Test kit for the console: the real app on a real socket, users of every role, sample data.

Used by tests/test_console_*.py and tests/test_access_*.py (nothing here is a mock: the app is
``create_app`` with every ``SETUPS`` entry, on the given settings' database and bus). The
``console`` and ``login`` fixtures of tests/conftest.py are built from ``serve_console`` and
``api_sign_ins``.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from ivr.config import Settings
from ivr.context import AppContext
from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES
from ivr.db.models import (
    Agent,
    Category,
    Channel,
    Citizen,
    Contact,
    ContactStatus,
    Message,
    Recording,
    TranscriptSegment,
    User,
)
from ivr.web.auth import hash_password
from tests.support.web import serve

PASSWORD = "correct-horse-9"
# username -> (role, language)
USERS = {"kim.minji": ("agent", "ko"), "super1": ("supervisor", "en"), "admin1": ("admin", "en"),
         "review1": ("reviewer", "ko")}
SEGMENTS = [(0.0, 2.0, "caller", "버스 노선이 바뀌었나요"), (2.0, 4.0, "agent", "네 470번 버스가 변경되었습니다"),
            (4.0, 6.0, "caller", "감사합니다 정류장 위치도 알려주세요")]


@functools.cache
def _password_hash() -> str:
    # Argon2 is slow on purpose; every seeded user shares the one test password, hashed once.
    return hash_password(PASSWORD)


@dataclass
class Console:
    ctx: AppContext
    url: str
    ids: dict[str, int] = field(default_factory=dict)


def prepare_settings(settings: Settings, tmp: Path) -> Settings:
    """Copies of the repository's queues into ``tmp`` (admins edit them), and tmp sound/menu dirs."""
    queues = tmp / "queues"
    shutil.copytree(DEFAULT_QUEUES, queues)
    settings.queues_dir = queues
    settings.agi.menus_dir = tmp / "menus"
    settings.agi.menus_dir.mkdir(exist_ok=True)
    for menu in DEFAULT_MENUS.glob("*.yaml"):
        shutil.copy(menu, settings.agi.menus_dir / menu.name)
    # Nothing listens here unless a test starts an AMI peer on it: applying reports Asterisk down.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        settings.ami.port = s.getsockname()[1]
    settings.asterisk.ami_timeout = 5
    settings.asterisk.sounds_dir = tmp / "sounds"
    settings.asterisk.config_dir = tmp / "asterisk"
    settings.recordings.dir.mkdir(parents=True, exist_ok=True)
    return settings


def make_tone(path: Path, seconds: int = 6) -> None:
    """A real 8 kHz mono WAV: a tone whose loudness changes each second (a visible waveform)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    expr = r"0.2*(1+mod(floor(t)\,3))*sin(2*PI*440*t)"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"aevalsrc={expr}:s=8000:d={seconds}", "-ac", "1", "-ar", "8000",
                    "-acodec", "pcm_s16le", str(path)], check=True)


async def seed(ctx: AppContext) -> dict[str, int]:
    """Users of every role, an agent, categories, a caller with an earlier inquiry, a recording."""
    async with ctx.db.transaction() as session:
        for username, (role, language) in USERS.items():
            session.add(User(username=username, display_name=username, password_hash=_password_hash(),
                             role=role, language=language))
    now = datetime.now(UTC)
    rec_rel = f"{now:%Y/%m/%d}/1700000000.1.wav"
    make_tone(ctx.settings.recordings.dir / rec_rel)
    async with ctx.db.transaction() as session:
        agent = Agent(username="kim.minji", display_name="김민지", extension="agent1001")
        other = Agent(username="lee.junho", display_name="이준호", extension="agent1002")
        bus_cat = Category(code="transport.bus", name_ko="교통 > 버스", name_en="Transport > Bus")
        waste = Category(code="waste", name_ko="청소·쓰레기", name_en="Waste")
        citizen = Citizen(identity_kind="phone", identity="+821012345678")
        texter = Citizen(identity_kind="phone", identity="+821099998888")
        session.add_all([agent, other, bus_cat, waste, citizen, texter])
        await session.flush()
        earlier = Contact(channel=Channel.voice, citizen_id=citizen.id, started_at=now - timedelta(days=3),
                          queue="general-ko", notes="지난주 쓰레기 수거 문의", resolution="answered",
                          category_id=waste.id, status=ContactStatus.closed, tracking_number="T-EARLIER")
        current = Contact(channel=Channel.voice, citizen_id=citizen.id, call_id="1700000001.5", queue="general-ko",
                          agent_id=agent.id, tracking_number="T-CURRENT")
        recorded = Contact(channel=Channel.voice, citizen_id=citizen.id, call_id="1700000000.1",
                           queue="general-ko", agent_id=other.id, category_id=bus_cat.id, satisfaction=4,
                           started_at=now - timedelta(hours=1), tracking_number="T-RECORDED",
                           notes="470번 버스 노선 변경 안내")
        sms = Contact(channel=Channel.sms, citizen_id=texter.id, tracking_number="T-SMS")
        session.add_all([earlier, current, recorded, sms])
        await session.flush()
        session.add(Message(contact_id=sms.id, direction="in", channel=Channel.sms, sender=texter.identity,
                            body="가로등이 고장났어요", provider="generic", provider_message_id="m-1"))
        rec = Recording(contact_id=recorded.id, path=rec_rel, format="wav", channels=1, sample_rate=8000,
                        duration_seconds=6.0, transcription_status="done", integrity="ok")
        session.add(rec)
        await session.flush()
        for start, end, speaker, text in SEGMENTS:
            session.add(TranscriptSegment(recording_id=rec.id, contact_id=recorded.id, speaker=speaker,
                                          start=start, end=end, text=text))
        return {"earlier": earlier.id, "current": current.id, "recorded": recorded.id, "sms": sms.id,
                "recording": rec.id, "citizen": citizen.id}


@asynccontextmanager
async def serve_console(settings: Settings) -> AsyncIterator[Console]:
    """The whole app on 127.0.0.1:<ephemeral>, seeded; closed afterwards."""
    ctx = await AppContext.create(settings)
    try:
        async with serve(ctx) as url:
            console = Console(ctx, url)
            console.ids = await seed(ctx)
            yield console
    finally:
        await ctx.close()
        await asyncio.sleep(0)


class ApiClient:
    """One signed-in user of the console's JSON API: its own cookie session and CSRF token."""

    def __init__(self, console: Console, session: aiohttp.ClientSession, csrf: str) -> None:
        self.console, self.session, self.csrf = console, session, csrf

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kw: Any) -> tuple[int, Any]:
        """(status, body): the body decoded from JSON when the answer is JSON, else its text."""
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json", **(headers or {})}
        async with self.session.request(method, self.console.url + path, headers=headers,
                                        allow_redirects=False, **kw) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body


SignIn = Callable[..., Awaitable[ApiClient]]


@asynccontextmanager
async def api_sign_ins(console: Console) -> AsyncIterator[SignIn]:
    """``sign_in(username, password=PASSWORD)``: a new ApiClient signed in through /api/login;
    every session it opened is closed afterwards."""
    sessions: list[aiohttp.ClientSession] = []

    async def sign_in(username: str, password: str = PASSWORD) -> ApiClient:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(s)
        async with s.post(f"{console.url}/api/login", json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()
            return ApiClient(console, s, (await r.json())["csrf_token"])

    try:
        yield sign_in
    finally:
        for s in sessions:
            await s.close()
