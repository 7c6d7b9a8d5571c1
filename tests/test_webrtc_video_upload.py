"""Uploading a call's sign-language video from the console (no Asterisk needed): chunks in
order, the whole file checked against the browser's SHA-256, filed in the recordings store
with an audit row; out-of-order chunks, a wrong checksum, a non-WebM file and another
agent's contact are refused and nothing is kept."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ivr.config import Settings
from ivr.db.models import AuditLog, Recording
from ivr.recordings.store import sha256_file
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console

# A tiny but real WebM (EBML header + the rest as opaque bytes: the server checks the header
# and the checksum, never decodes).
WEBM = bytes.fromhex("1a45dfa3") + bytes(range(256)) * 40


@pytest.fixture
async def console(settings: Settings, tmp_path: Path) -> AsyncIterator[Console]:
    async with serve_console(prepare_settings(settings, tmp_path)) as c:
        yield c


class Agent:
    def __init__(self, console: Console, session: aiohttp.ClientSession, csrf: str) -> None:
        self.console, self.session, self.csrf = console, session, csrf

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.post(self.console.url + path, headers={"X-CSRF-Token": self.csrf}, **kw) as r:
            return r.status, await r.json()


@pytest.fixture
async def agent(console: Console) -> AsyncIterator[Agent]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(f"{console.url}/api/login", json={"username": "kim.minji", "password": PASSWORD}) as r:
            assert r.status == 200
            yield Agent(console, s, (await r.json())["csrf_token"])


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


async def test_chunks_in_order_then_the_checked_file_is_a_recording(console: Console, agent: Agent) -> None:
    contact = console.ids["current"]  # kim.minji's call
    for seq, part in enumerate(chunks(WEBM, 4000)):
        status, body = await agent.post(f"/api/console/contacts/{contact}/video/chunks?seq={seq}", data=part)
        assert status == 200 and body["seq"] == seq
    digest = hashlib.sha256(WEBM).hexdigest()
    status, body = await agent.post(f"/api/console/contacts/{contact}/video/finish", json={"sha256": digest, "seconds": 12.5})
    assert status == 201 and body["sha256"] == digest and body["path"].endswith("/1700000001.5-video.webm")
    async with console.ctx.db.session() as session:
        rec = await session.get(Recording, body["recording_id"])
        audit = (await session.execute(select(AuditLog).where(AuditLog.action == "video_recorded"))).scalar_one()
    assert rec is not None and rec.contact_id == contact and rec.format == "webm" and rec.integrity == "ok"
    assert rec.size_bytes == len(WEBM) and rec.duration_seconds == 12.5
    stored = console.ctx.settings.recordings.dir / rec.path
    assert await asyncio.to_thread(sha256_file, stored) == digest
    assert audit.actor == "kim.minji" and audit.target == f"recording:{rec.id}"
    # a finish sent twice answers with the same recording
    status, again = await agent.post(f"/api/console/contacts/{contact}/video/finish", json={"sha256": digest})
    assert status == 200 and again["recording_id"] == rec.id


async def test_a_wrong_checksum_keeps_nothing(console: Console, agent: Agent) -> None:
    contact = console.ids["current"]
    assert (await agent.post(f"/api/console/contacts/{contact}/video/chunks?seq=0", data=WEBM))[0] == 200
    status, body = await agent.post(f"/api/console/contacts/{contact}/video/finish", json={"sha256": "0" * 64})
    assert status == 422 and "checksum" in body["error"]
    async with console.ctx.db.session() as session:
        assert (await session.execute(select(Recording).where(Recording.format == "webm"))).first() is None
        corrupt = (await session.execute(select(AuditLog).where(AuditLog.action == "video_upload_corrupt"))).scalar_one()
    assert corrupt.data["claimed"] == "0" * 64


async def test_out_of_order_foreign_and_non_webm_uploads_are_refused(console: Console, agent: Agent) -> None:
    ids = console.ids
    current = ids["current"]
    status, body = await agent.post(f"/api/console/contacts/{current}/video/chunks?seq=1", data=WEBM)
    assert status == 409 and "expected chunk 0" in body["error"]
    status, body = await agent.post(f"/api/console/contacts/{current}/video/chunks?seq=0", data=b"RIFF....WAVEfmt ")
    assert status == 422 and "WebM" in body["error"]
    status, _ = await agent.post(f"/api/console/contacts/{current}/video/chunks?seq=x", data=WEBM)
    assert status == 400
    # lee.junho's recorded call is not kim.minji's to upload to
    status, body = await agent.post(f"/api/console/contacts/{ids['recorded']}/video/chunks?seq=0", data=WEBM)
    assert status == 403
    status, body = await agent.post(f"/api/console/contacts/{current}/video/finish", json={"sha256": "abc"})
    assert status == 400


async def test_a_chunk_that_arrives_in_pieces_is_kept_whole(console: Console, agent: Agent) -> None:
    # A browser's chunk of a few MB reaches the server in many reads: all of it is kept (the
    # first read alone was a fraction, and the checksum at the end then failed the recording).
    contact = console.ids["current"]
    video = bytes.fromhex("1a45dfa3") + bytes(range(256)) * 8192  # 2 MiB and 4 bytes

    async def body() -> AsyncIterator[bytes]:  # sent as it is produced: chunked transfer
        for part in chunks(video, 64 * 1024):
            yield part

    status, answer = await agent.post(f"/api/console/contacts/{contact}/video/chunks?seq=0", data=body())
    assert (status, answer) == (200, {"seq": 0, "bytes": len(video)})
    digest = hashlib.sha256(video).hexdigest()
    status, done = await agent.post(f"/api/console/contacts/{contact}/video/finish", json={"sha256": digest})
    assert status == 201 and done["sha256"] == digest
