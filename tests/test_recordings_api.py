"""Reviewer API on a real socket: list/filter, audio with Range requests, transcript, search, audit."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import AuditLog, Channel, Contact, TranscriptSegment
from ivr.recordings.store import import_file, index_file
from ivr.web.app import create_app
from ivr.web.auth import create_user

PASSWORD = "review-password-1"


@dataclass
class Api:
    base: str
    ctx: AppContext
    clients: dict[str, tuple[aiohttp.ClientSession, str]]  # role -> (signed-in session, csrf)
    anonymous: aiohttp.ClientSession
    ids: dict[str, int]
    audio: dict[int, bytes]


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings()
    settings.recordings.dir = tmp_path / "recordings"
    settings.data_dir = tmp_path / "var"
    ctx = AppContext(settings, Database(db_url), MemoryBus())
    store = settings.recordings.dir
    ids: dict[str, int] = {}
    audio: dict[int, bytes] = {}
    async with ctx.db.transaction() as session:
        for n, (call_id, language, queue, notes, segments) in enumerate([
            ("1795593159.8", "ko", "general-ko", "버스 노선 변경 문의, 안내함",
             [("caller", 0.5, 2.1, "마을버스 노선이 바뀌었나요"), ("agent", 2.6, 4.0, "네 다음 달부터 바뀝니다")]),
            ("1795593200.3", "en", "en", "bulky waste pickup",
             [("caller", 1.0, 2.0, "when is the bulky waste pickup")]),
        ]):
            contact = Contact(channel=Channel.voice, call_id=call_id, language=language, queue=queue, notes=notes)
            session.add(contact)
            await session.flush()
            wav = tmp_path / f"{call_id}.wav"
            sox = ["sox", "-n", "-r", "8000", "-c", "2", "-e", "mu-law", str(wav), "synth", str(4 + n),
                   "sine", "300", "sine", "500"]
            await asyncio.to_thread(subprocess.run, sox, check=True, capture_output=True)
            path = import_file(store, wav, started=datetime(2026, 11, 20 + n, 9, tzinfo=UTC))
            rec = await index_file(session, store, path)
            rec.transcription_status = "done"
            for speaker, start, end, text in segments:
                session.add(TranscriptSegment(recording_id=rec.id, contact_id=contact.id, speaker=speaker,
                                              start=start, end=end, text=text, confidence=0.9))
            ids[call_id], ids[f"contact:{call_id}"] = rec.id, contact.id
            audio[rec.id] = path.read_bytes()
    for role in ("reviewer", "supervisor", "agent"):
        await create_user(ctx, f"u-{role}", PASSWORD, role)
    server = TestServer(create_app(ctx), host="127.0.0.1", port=0)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    clients = {}
    for role in ("reviewer", "supervisor", "agent"):
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with s.post(f"{base}/api/login", json={"username": f"u-{role}", "password": PASSWORD}) as r:
            assert r.status == 200
            clients[role] = (s, (await r.json())["csrf_token"])
    anonymous = aiohttp.ClientSession()
    try:
        yield Api(base, ctx, clients, anonymous, ids, audio)
    finally:
        for s, _ in clients.values():
            await s.close()
        await anonymous.close()
        await server.close()
        await ctx.db.dispose()


async def _get(api: Api, role: str, path: str, **kw: object) -> tuple[int, Any, Any]:
    session = api.clients[role][0] if role != "anonymous" else api.anonymous
    async with session.get(api.base + path, allow_redirects=False, **kw) as r:  # type: ignore[arg-type]
        body = await (r.json() if r.content_type == "application/json" else r.read())
        return r.status, body, r.headers


async def _audit_actions(api: Api, actor: str) -> list[tuple[str, str]]:
    async with api.ctx.db.session() as session:
        rows = (await session.execute(select(AuditLog).where(AuditLog.actor == actor).order_by(AuditLog.id))).scalars()
        return [(a.action, a.target) for a in rows if a.action not in ("sign_in",)]


async def test_roles_listing_filters_and_openapi(api: Api) -> None:
    rid = api.ids["1795593159.8"]
    for path in ("/api/recordings", f"/api/recordings/{rid}", f"/api/recordings/{rid}/audio",
                 f"/api/recordings/{rid}/transcript", "/api/search?q=버스"):
        assert (await _get(api, "anonymous", path))[0] == 401, path
        assert (await _get(api, "agent", path))[0] == 403, path
        assert (await _get(api, "supervisor", path))[0] == 200, path
        assert (await _get(api, "reviewer", path))[0] == 200, path
    await _list_and_filter(api)


async def _list_and_filter(api: Api) -> None:
    status, body, _ = await _get(api, "reviewer", "/api/recordings")
    assert status == 200 and isinstance(body, dict)
    assert body["total"] == 2
    assert [i["call_id"] for i in body["items"]] == ["1795593200.3", "1795593159.8"]  # newest first
    first = body["items"][1]
    assert first["duration_seconds"] == 4.0 and first["channels"] == 2 and first["format"] == "wav/mulaw"
    assert len(first["sha256"]) == 64 and first["integrity"] == "ok"
    _, by_lang, _ = await _get(api, "reviewer", "/api/recordings?language=ko")
    assert [i["call_id"] for i in by_lang["items"]] == ["1795593159.8"]  # type: ignore[index]
    _, by_day, _ = await _get(api, "reviewer", "/api/recordings?from=2026-11-21&to=2026-11-22")
    assert [i["call_id"] for i in by_day["items"]] == ["1795593200.3"]  # type: ignore[index]
    contact = api.ids["contact:1795593159.8"]
    _, by_contact, _ = await _get(api, "reviewer", f"/api/recordings?contact_id={contact}&status=done")
    assert by_contact["total"] == 1  # type: ignore[index]
    status, err, _ = await _get(api, "reviewer", "/api/recordings?from=yesterday")
    assert status == 400 and "from" in err["error"]  # type: ignore[index]
    assert (await _get(api, "reviewer", "/api/recordings?status=lost"))[0] == 400
    assert (await _get(api, "reviewer", "/api/recordings/999999"))[0] == 404
    await _openapi_describes_the_routes(api)


async def test_audio_ranges_transcript_search_and_legal_hold(api: Api) -> None:
    await _audio_streams_with_range_requests(api)
    await _transcript_with_timings_and_search_to_the_second(api)
    await _legal_hold_needs_a_supervisor_and_csrf(api)


async def _audio_streams_with_range_requests(api: Api) -> None:
    rid = api.ids["1795593159.8"]
    whole = api.audio[rid]
    status, body, headers = await _get(api, "reviewer", f"/api/recordings/{rid}/audio")
    assert status == 200 and body == whole and headers["Content-Type"] == "audio/wav"
    assert headers["Accept-Ranges"] == "bytes"
    status, body, headers = await _get(api, "reviewer", f"/api/recordings/{rid}/audio",
                                       headers={"Range": "bytes=44-1043"})
    assert status == 206 and body == whole[44:1044]
    assert headers["Content-Range"] == f"bytes 44-1043/{len(whole)}"
    status, body, _ = await _get(api, "reviewer", f"/api/recordings/{rid}/audio", headers={"Range": "bytes=-100"})
    assert status == 206 and body == whole[-100:]
    status, _, _ = await _get(api, "reviewer", f"/api/recordings/{rid}/audio",
                              headers={"Range": f"bytes={len(whole) + 10}-"})
    assert status == 416
    actions = await _audit_actions(api, "u-reviewer")
    assert actions.count(("recording_audio", f"recording:{rid}")) == 4  # every request, even the refused one


async def _transcript_with_timings_and_search_to_the_second(api: Api) -> None:
    rid = api.ids["1795593159.8"]
    contact = api.ids["contact:1795593159.8"]
    status, body, _ = await _get(api, "reviewer", f"/api/recordings/{rid}/transcript")
    assert status == 200 and isinstance(body, dict)
    assert [(s["speaker"], s["start"], s["end"]) for s in body["segments"]] == [
        ("caller", 0.5, 2.1), ("agent", 2.6, 4.0)]
    assert body["segments"][1]["text"] == "네 다음 달부터 바뀝니다"
    # Korean search, short (2 syllables) and long terms, over transcripts and notes.
    status, found, _ = await _get(api, "reviewer", "/api/search?q=바뀝니다")
    assert status == 200 and isinstance(found, dict)
    hit = next(i for i in found["items"] if i["kind"] == "segment")
    assert (hit["contact_id"], hit["recording_id"], hit["start"], hit["speaker"]) == (contact, rid, 2.6, "agent")
    assert hit["audio_url"] == f"/api/recordings/{rid}/audio"
    _, short, _ = await _get(api, "reviewer", "/api/search?q=노선")
    kinds = sorted((i["kind"], i["contact_id"], i.get("start")) for i in short["items"])  # type: ignore[index]
    assert kinds == [("notes", contact, None), ("segment", contact, 0.5)]
    _, english, _ = await _get(api, "reviewer", "/api/search?q=bulky waste")
    assert {i["contact_id"] for i in english["items"]} == {api.ids["contact:1795593200.3"]}  # type: ignore[index]
    _, none, _ = await _get(api, "reviewer", "/api/search?q=지하철")
    assert none["count"] == 0  # type: ignore[index]
    assert (await _get(api, "reviewer", "/api/search?q=%20"))[0] == 400
    actions = await _audit_actions(api, "u-reviewer")
    assert ("transcript_viewed", f"recording:{rid}") in actions
    assert actions.count(("search", "search")) == 4


async def _legal_hold_needs_a_supervisor_and_csrf(api: Api) -> None:
    rid = api.ids["1795593159.8"]
    url = f"{api.base}/api/recordings/{rid}/legal-hold"
    reviewer, r_csrf = api.clients["reviewer"]
    async with reviewer.put(url, json={"hold": True}, headers={"X-CSRF-Token": r_csrf}) as r:
        assert r.status == 403
    sup, csrf = api.clients["supervisor"]
    async with sup.put(url, json={"hold": True}) as r:
        assert r.status == 403  # no CSRF token
    async with sup.put(url, json={"hold": "yes"}, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 400
    async with sup.put(url, json={"hold": True}, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 200 and (await r.json())["legal_hold"] is True
    _, body, _ = await _get(api, "reviewer", f"/api/recordings/{rid}")
    assert body["legal_hold"] is True  # type: ignore[index]
    assert ("legal_hold_set", f"recording:{rid}") in await _audit_actions(api, "u-supervisor")


async def _openapi_describes_the_routes(api: Api) -> None:
    async with api.anonymous.get(api.base + "/openapi.json") as r:
        doc = await r.json()
    for path in ("/api/recordings", "/api/recordings/{id}", "/api/recordings/{id}/audio",
                 "/api/recordings/{id}/transcript", "/api/recordings/{id}/legal-hold", "/api/search"):
        assert path in doc["paths"], path
    assert "206" in doc["paths"]["/api/recordings/{id}/audio"]["get"]["responses"]


# Ids no INTEGER column can hold (past 32 and 64 bits), and spellings int() would take.
IMPOSSIBLE_IDS = ("18446744073709551616", "9223372036854775808", "2147483648", "9" * 30, "0", "-1", "+1",
                  "%20" + "1", "1_0", "%D9%A3")


async def test_ids_beyond_any_database_integer_are_404_in_json(api: Api) -> None:
    """Regression (schemathesis): a path id over 64 bits reached the driver and answered 500."""
    sup, csrf = api.clients["supervisor"]
    agent, agent_csrf = api.clients["agent"]
    for raw in IMPOSSIBLE_IDS:
        calls = [(sup, "GET", f"/api/recordings/{raw}", None), (sup, "GET", f"/api/recordings/{raw}/audio", None),
                 (sup, "GET", f"/api/recordings/{raw}/transcript", None),
                 (sup, "PUT", f"/api/recordings/{raw}/legal-hold", {"hold": True}),
                 (sup, "GET", f"/api/console/recordings/{raw}/peaks", None),
                 (sup, "GET", f"/api/console/recordings/{raw}/reviews", None),
                 (sup, "POST", f"/api/console/recordings/{raw}/reviews", {"scores": {}, "comment": ""}),
                 (agent, "GET", f"/api/console/contacts/{raw}", None),
                 (agent, "POST", f"/api/console/contacts/{raw}/record", {"notes": "x"})]
        for session, method, path, body in calls:
            token = agent_csrf if session is agent else csrf
            async with session.request(method, api.base + path, json=body,
                                       headers={"X-CSRF-Token": token}) as r:
                assert r.status == 404, (method, path, r.status, await r.text())
                assert r.content_type == "application/json", path
                assert "error" in await r.json(), path
    async with agent.post(f"{api.base}/api/open311/contacts/{IMPOSSIBLE_IDS[0]}/requests",
                          json={"service_code": "x"}, headers={"X-CSRF-Token": agent_csrf}) as r:
        assert r.status == 404 and r.content_type == "application/json", (r.status, await r.text())
    # The same numbers as query filters are refused as bad requests, not sent to the database.
    for query in (f"contact_id={IMPOSSIBLE_IDS[0]}", f"offset={IMPOSSIBLE_IDS[3]}", f"limit={IMPOSSIBLE_IDS[1]}"):
        status, body, _ = await _get(api, "reviewer", f"/api/recordings?{query}")
        assert status == 400 and "expected a whole number" in body["error"], (query, status, body)
    status, body, _ = await _get(api, "reviewer", f"/api/console/recordings?satisfaction={IMPOSSIBLE_IDS[0]}")
    assert status == 400 and "satisfaction" in body["error"]
    # Still answering, and a real id still works.
    rid = api.ids["1795593159.8"]
    assert (await _get(api, "reviewer", f"/api/recordings/{rid}"))[0] == 200
    assert (await _get(api, "reviewer", f"/api/console/recordings/{rid}/peaks"))[0] == 200
