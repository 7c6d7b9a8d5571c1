"""Fuzzing what people upload: MMS photos (provider webhooks) and admin prompt uploads.

Hypothesis makes the files (random bytes, real magic numbers with junk after them, HTML and
scripts claiming to be images, empty files) and the names (traversal, absolute paths, NUL,
Korean, very long). Everything goes through the real application on a real socket.
Properties: the text of a message is never lost because of its photo; a stored photo is a
real JPEG/PNG/GIF named by us under ``<data_dir>/media``; a prompt lands only at
``<sounds>/<language>/dasan/<safe name>.wav`` as 8 kHz mono WAV; nothing is ever written
outside those folders; bad input gets a 4xx with a reason, never a 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.messaging.media import ALLOWED, MediaError, check
from ivr.messaging.providers.generic import GENERIC_HEADER, generic_signature
from ivr.web.app import create_app
from ivr.web.auth import create_user

SECRET = "fuzz-webhook-secret"
MAGICS = [m for _t, (_e, ms) in ALLOWED.items() for m in ms]
TINY_WAV = (b"RIFF" + (36 + 1600).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + b"\x01\x00\x01\x00" + (8000).to_bytes(4, "little") + (16000).to_bytes(4, "little")
            + b"\x02\x00\x10\x00data" + (1600).to_bytes(4, "little") + bytes(1600))

photo_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda m, rest: m + rest, st.sampled_from(MAGICS), st.binary(max_size=1024)),
    st.sampled_from([b"", b"<html><script>alert(1)</script></html>", b"#!/bin/sh\nrm -rf /\n",
                     b"%PDF-1.4\n", b"GIF8", b"\x89PNG"]),
)
claimed_types = st.one_of(st.none(), st.sampled_from(["image/jpeg", "image/jpg", "image/png", "image/gif",
                                                      "text/html", "image/svg+xml", "application/x-sh",
                                                      "image/png; charset=binary", ""]),
                          st.text(max_size=60))


def test_media_check_accepts_only_what_the_bytes_are() -> None:
    @hsettings(max_examples=300, deadline=None)
    @given(photo_bytes, claimed_types)
    def run(data: bytes, claimed: str | None) -> None:
        try:
            actual = check(data, claimed, 1024)
        except MediaError:
            return
        assert actual in ALLOWED
        assert any(data.startswith(m) for m in ALLOWED[actual][1])
        assert 0 < len(data) <= 1024

    run()


@contextlib.asynccontextmanager
async def _live(settings_: Settings, db_url: str) -> AsyncIterator[tuple[str, web.Application, AppContext]]:
    settings_.sms.webhook_secret = SECRET
    ctx = AppContext(settings_, Database(db_url), MemoryBus())
    app = create_app(ctx)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), app, ctx
    finally:
        await server.close()
        await ctx.db.dispose()


@contextlib.contextmanager
def _loop_with(settings_: Settings, db_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, str, web.Application,
                                                                    AppContext]]:
    loop = asyncio.new_event_loop()
    cm = _live(settings_, db_url)
    base, app, ctx = loop.run_until_complete(cm.__aenter__())
    try:
        yield loop, base, app, ctx
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_mms_photos_fuzzed_through_the_webhook(settings: Settings, sqlite_url: str, tmp_path: Path) -> None:
    settings.sms.max_media_bytes = 1500
    everything_before = _files(tmp_path)
    with _loop_with(settings, sqlite_url) as (loop, base, _app, _ctx):
        # A route that disappeared is a failure, not a reason to fuzz nothing.
        assert any(getattr(r.resource, "canonical", "") == "/webhooks/sms" for r in _app.router.routes()), \
            "the messaging webhooks are not registered in ivr.web.app.SETUPS"
        http = loop.run_until_complete(_session())

        @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(st.tuples(photo_bytes, claimed_types), min_size=1, max_size=3),
               st.text(max_size=80))
        @example([(b"GIF89a" + bytes(20), "image/gif")], "사진 첨부")  # one that must be stored
        def run(photos: list[tuple[bytes, str | None]], text: str) -> None:
            message_id = uuid.uuid4().hex
            payload = {"message_id": message_id, "from": "+821012345678", "body": text,
                       "media": [{"content_type": c if c is not None else "image/jpeg",
                                  "data": base64.b64encode(d).decode()} for d, c in photos]}
            body = json.dumps(payload).encode()

            async def post() -> tuple[int, dict[str, object]]:
                async with http.post(f"{base}/webhooks/sms", data=body, headers={
                        GENERIC_HEADER: generic_signature(SECRET, body), "Content-Type": "application/json"}) as r:
                    return r.status, await r.json(content_type=None)

            status, answer = loop.run_until_complete(post())
            assert status == 200, (status, answer)  # the text is kept whatever the photos are
            assert answer["message_id"]

        try:
            run()
        finally:
            loop.run_until_complete(http.close())
    media_root = settings.data_dir / "media"
    assert any(f.suffix == ".gif" for f in _files(media_root)), "the real GIF was not stored"
    for f in _files(media_root):
        assert f.suffix in {ext for ext, _m in ALLOWED.values()}, f
        assert any(f.read_bytes().startswith(m) for m in MAGICS), f"{f} is not a real photo"
        assert f.stat().st_size <= 1500
        assert not f.name.endswith(".part")
    outside = _files(tmp_path) - everything_before - _files(media_root)
    assert all(p.suffix in (".db", ".db-wal", ".db-shm", ".db-journal") or p.name.endswith((".db-wal", ".db-shm"))
               for p in outside), f"files written outside the media folder: {sorted(outside)[:5]}"


def test_prompt_uploads_fuzzed(settings: Settings, sqlite_url: str, tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    settings.asterisk.sounds_dir = sounds
    watch = tmp_path / "watch"  # where a traversal would land
    watch.mkdir()
    with _loop_with(settings, sqlite_url) as (loop, base, app, ctx):
        assert any(getattr(r.resource, "canonical", "") == "/api/console/admin/prompts" for r in app.router.routes()), \
            "the console's prompt upload (/api/console/admin/prompts) is not registered in SETUPS"
        loop.run_until_complete(create_user(ctx, "fuzz-admin", "fuzz-password-1", "admin"))
        http = loop.run_until_complete(_session())

        async def login() -> str:
            async with http.post(f"{base}/api/login", json={"username": "fuzz-admin",
                                                            "password": "fuzz-password-1"}) as r:
                return str((await r.json())["csrf_token"])

        csrf = loop.run_until_complete(login())
        names = st.one_of(st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"),
                          st.sampled_from(["../../watch/x", "/etc/passwd", "..", "a/b", "a\x00b", "안내", "x" * 300,
                                           "..%2fwatch", "A-UPPER", " space"]),
                          st.text(max_size=40))
        files = st.one_of(st.just(TINY_WAV), st.binary(max_size=512),
                          st.sampled_from([b"", b"<html></html>", b"RIFF\x00\x00\x00\x00WAVE"]))

        @hsettings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        # (file names without control characters: the client library refuses to put them in a header)
        @given(names, st.sampled_from(["ko", "en", "zh", "ja", "vi", "mn", "../..", "xx", ""]), files,
               st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=40))
        def run(name: str, language: str, data: bytes, filename: str) -> None:
            form = aiohttp.FormData()
            form.add_field("name", name)
            form.add_field("language", language)
            form.add_field("file", data, filename=filename or "x.wav", content_type="audio/wav")

            async def post() -> int:
                async with http.post(f"{base}/api/console/admin/prompts", data=form,
                                     headers={"X-CSRF-Token": csrf}) as r:
                    await r.read()
                    return r.status

            status = loop.run_until_complete(post())
            assert status < 500, (name, language, status)
            if status == 201:
                target = sounds / language / "dasan" / f"{name}.wav"
                assert target.is_file()
                assert target.read_bytes()[:4] == b"RIFF"

        try:
            run()
        finally:
            loop.run_until_complete(http.close())
    assert not _files(watch), "a traversal wrote outside the sounds folder"
    for f in _files(sounds):
        rel = f.relative_to(sounds).parts
        assert len(rel) == 3 and rel[1] == "dasan" and f.suffix == ".wav", f
