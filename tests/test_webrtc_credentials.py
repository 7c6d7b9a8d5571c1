"""Citizens' browser-call credentials (no Asterisk needed): the /call page's one-time tokens,
minting from the endpoint pool, expiry, replay, the per-address rate limit, TURN credentials,
and the API's refusals (each logged and audited)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from ivr.config import Settings, WebrtcSettings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import AuditLog
from ivr.web.app import create_app
from ivr.webrtc.asterisk_push import auth_object
from ivr.webrtc.credentials import CredentialIssuer, CredentialRefused, PageTokens
from ivr.webrtc.ice import ice_servers, turn_rest_credentials
from ivr.webrtc.slots import contact_channel, kind_of_channel, slot_names


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def reason_of(fn: object, *args: object) -> str:
    with pytest.raises(CredentialRefused) as info:
        await fn(*args)  # type: ignore[operator]
    return info.value.reason


# -- page tokens (spent ones in the counselling database: SQLite and PostgreSQL) --------------

async def test_a_page_token_is_good_once(db: Database) -> None:
    tokens = PageTokens(db, "site-secret", 60, clock=Clock())
    token = tokens.issue()
    await tokens.redeem(token)
    assert await reason_of(tokens.redeem, token) == "replayed"


async def test_an_expired_page_token_is_refused(db: Database) -> None:
    clock = Clock()
    tokens = PageTokens(db, "site-secret", 60, clock=clock)
    token = tokens.issue()
    clock.now += 61
    assert await reason_of(tokens.redeem, token) == "expired"


async def test_a_forged_or_foreign_page_token_is_refused(db: Database) -> None:
    clock = Clock()
    ours, theirs = PageTokens(db, "site-secret", 60, clock=clock), PageTokens(db, "other-secret", 60, clock=clock)
    token_id, issued, _sig = ours.issue().split(".")
    assert await reason_of(ours.redeem, theirs.issue()) == "invalid"
    assert await reason_of(ours.redeem, f"{token_id}.{int(issued) + 1000}.{_sig}") == "invalid"  # moved in time
    for junk in ("", "a.b", "x.notanumber.y", "a" * 500):
        assert await reason_of(ours.redeem, junk) == "invalid"


async def test_spent_tokens_are_forgotten_once_they_would_have_expired(db: Database) -> None:
    clock = Clock()
    tokens = PageTokens(db, "site-secret", 60, clock=clock)
    for _ in range(5):
        await tokens.redeem(tokens.issue())
    assert await tokens.spent_count() == 5
    clock.now += 61
    await tokens.redeem(tokens.issue())
    assert await tokens.spent_count() == 1


# -- minting -------------------------------------------------------------------------------

def issuer(db: Database, clock: Clock, **overrides: object) -> CredentialIssuer:
    w = WebrtcSettings(video_slots=2, voice_slots=1, credential_ttl_seconds=120, mint_per_minute=50)
    return CredentialIssuer(db, w.model_copy(update=overrides), clock=clock)


async def test_minting_leases_a_slot_of_the_kind_with_a_fresh_password_and_an_expiry(db: Database) -> None:
    clock = Clock()
    issue = issuer(db, clock)
    first, second = await issue.mint("video", "198.51.100.1"), await issue.mint("video", "198.51.100.2")
    assert {first.username, second.username} == set(slot_names("video", 2))
    assert first.password != second.password and len(first.password) >= 32
    assert first.expires_at == clock.now + 120
    voice = await issue.mint("voice", "198.51.100.3")
    assert voice.username == "webvoice-001"
    assert kind_of_channel(f"PJSIP/{voice.username}-0000002a") == "voice"
    assert kind_of_channel(f"PJSIP/{first.username}-00000001") == "video"


async def test_a_slot_is_not_leased_again_before_its_credential_expires(db: Database) -> None:
    clock = Clock()
    issue = issuer(db, clock)
    await issue.mint("video", "a")
    clock.now += 1
    await issue.mint("video", "b")
    with pytest.raises(CredentialRefused) as info:
        await issue.mint("video", "c")
    assert info.value.reason == "busy" and info.value.retry_after == pytest.approx(119)
    clock.now += 120  # the first credential expired: its slot is free, with a new password
    again = await issue.mint("video", "c")
    assert again.username == "webvideo-001"


async def test_a_slot_whose_password_could_not_be_pushed_is_given_back(db: Database) -> None:
    clock = Clock()
    issue = issuer(db, clock, voice_slots=1)
    credential = await issue.mint("voice", "a")
    await issue.release(credential)
    assert (await issue.mint("voice", "a")).username == credential.username


async def test_minting_is_rate_limited_per_address(db: Database) -> None:
    clock = Clock()
    issue = issuer(db, clock, video_slots=20, mint_per_minute=3)
    for _ in range(3):
        await issue.mint("video", "203.0.113.9")
        clock.now += 10
    with pytest.raises(CredentialRefused) as info:
        await issue.mint("video", "203.0.113.9")
    # the first of the three leaves the minute 30 s from now
    assert info.value.reason == "rate_limited" and info.value.retry_after == pytest.approx(30)
    await issue.mint("video", "203.0.113.10")  # another address is not held back
    clock.now += 31  # the first mint left the window: one place back, and only one
    await issue.mint("video", "203.0.113.9")
    assert await reason_of(issue.mint, "video", "203.0.113.9") == "rate_limited"


async def test_an_unknown_kind_is_refused(db: Database) -> None:
    assert await reason_of(issuer(db, Clock()).mint, "fax", "a") == "invalid"


async def test_the_auth_object_is_what_res_sorcery_astdb_reads(db: Database) -> None:
    import json

    credential = await issuer(db, Clock()).mint("video", "a")
    assert json.loads(auth_object(credential)) == {"auth_type": "userpass", "username": credential.username,
                                                   "password": credential.password}


def test_browser_calls_are_recorded_under_their_own_channel() -> None:
    assert contact_channel("PJSIP/webvideo-007-00000012") == "video"
    assert contact_channel("PJSIP/webvoice-001-00000013") == "web_voice"
    assert contact_channel("PJSIP/trunk-00000001") == "voice"
    assert contact_channel("Local/general-ko@dasan-callback-00000001;1") == "voice"


# -- ICE servers ---------------------------------------------------------------------------

def test_turn_rest_credentials_are_coturns_use_auth_secret() -> None:
    user, password = turn_rest_credentials("turn-secret", "webvideo-001", 600, now=1_800_000_000)
    assert user == "1800000600:webvideo-001"
    expected = base64.b64encode(hmac.new(b"turn-secret", user.encode(), hashlib.sha1).digest()).decode()
    assert password == expected


def test_ice_servers_from_the_settings() -> None:
    assert ice_servers(WebrtcSettings(), "x") == []
    w = WebrtcSettings(stun_server="stun.example.org:3478", turn_server="turn.example.org", turn_secret="s")
    stun, turn = ice_servers(w, "webvideo-001")
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"][0] == "turn:turn.example.org:3478?transport=udp" and turn["username"].endswith(":webvideo-001")


# -- the API -------------------------------------------------------------------------------

@pytest.fixture
async def client(settings: Settings, tmp_path: Path) -> object:
    settings.webrtc.enabled = True
    settings.webrtc.mint_per_minute = 2
    # Nothing listens on this AMI port: pushing a credential fails the way Asterisk down does.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        settings.ami.port = s.getsockname()[1]
    settings.asterisk.ami_timeout = 2
    ctx = await AppContext.create(settings)
    test_client = TestClient(TestServer(create_app(ctx)))
    await test_client.start_server()
    try:
        yield test_client, ctx
    finally:
        await test_client.close()
        await ctx.close()


async def page_token(test_client: TestClient) -> str:
    response = await test_client.get("/call?lang=en")
    assert response.status == 200
    html = await response.text()
    start = html.index('data-token="') + len('data-token="')
    return html[start:html.index('"', start)]


async def test_the_api_refuses_replayed_and_junk_tokens_and_logs_them(client: object, caplog: pytest.LogCaptureFixture) -> None:
    test_client, ctx = client  # type: ignore[misc]
    token = await page_token(test_client)
    caplog.set_level(logging.WARNING, "dasan.webrtc")
    first = await test_client.post("/api/webcall/credentials", json={"kind": "video", "token": token})
    # The token was good; Asterisk is not reachable, so no credential is handed out.
    assert first.status == 503 and (await first.json())["reason"] == "unavailable"
    replay = await test_client.post("/api/webcall/credentials", json={"kind": "video", "token": token})
    body = await replay.json()
    assert replay.status == 409 and body["reason"] == "replayed" and "password" not in body
    assert body["token"] != token  # a fresh token for an honest retry
    junk = await test_client.post("/api/webcall/credentials", json={"kind": "video", "token": "x.1.y"})
    assert junk.status == 403 and (await junk.json())["reason"] == "invalid"
    assert "refused (replayed)" in caplog.text and "refused (invalid)" in caplog.text
    async with ctx.db.session() as session:
        reasons = [row.data["reason"] for row in (await session.execute(
            select(AuditLog).where(AuditLog.action == "webcall_refused").order_by(AuditLog.id))).scalars()]
    assert reasons == ["replayed", "invalid"]


async def test_the_api_rate_limits_minting_per_address(client: object) -> None:
    test_client, _ctx = client  # type: ignore[misc]
    statuses = []
    for _ in range(3):
        token = await page_token(test_client)
        response = await test_client.post("/api/webcall/credentials", json={"kind": "voice", "token": token})
        statuses.append((response.status, (await response.json())["reason"]))
    assert statuses[:2] == [(503, "unavailable"), (503, "unavailable")]
    assert statuses[2] == (429, "rate_limited")


async def test_minting_is_off_when_webrtc_is_not_enabled(client: object) -> None:
    test_client, ctx = client  # type: ignore[misc]
    ctx.settings.webrtc.enabled = False
    token = await page_token(test_client)
    response = await test_client.post("/api/webcall/credentials", json={"kind": "voice", "token": token})
    assert response.status == 404


async def test_a_browser_call_opens_a_contact_of_its_own_channel(db: Database) -> None:
    """Whoever opens the contact first (the IVR for web voice, the AMI bridge for video), its
    channel comes from the Asterisk channel name."""
    from ivr.db.models import Contact
    from ivr.records import NewCall, ensure_call_contacts

    calls = [NewCall("1800000000.1", "", "ko", contact_channel("PJSIP/webvideo-001-00000001")),
             NewCall("1800000000.2", "", "ko", contact_channel("PJSIP/webvoice-002-00000002")),
             NewCall("1800000000.3", "+8227777777", "ko")]
    async with db.transaction() as session:
        await ensure_call_contacts(session, calls)
    async with db.session() as session:
        rows = {c.call_id: (str(c.channel), c.citizen_id) for c in (await session.execute(select(Contact))).scalars()}
    assert rows["1800000000.1"] == ("video", None) and rows["1800000000.2"] == ("web_voice", None)
    assert rows["1800000000.3"][0] == "voice" and rows["1800000000.3"][1] is not None


def test_a_foreign_language_page_calls_its_language_line_while_it_is_open(settings: Settings) -> None:
    import yaml

    from ivr.queues import load_queues
    from ivr.webrtc.api import voice_target

    path = settings.queues_dir / "queues.yaml"
    data = yaml.safe_load(path.read_text())
    data["queues"]["en"]["hours"] = "always"
    data["schedules"]["never"] = {"week": {}}
    data["queues"]["zh"]["hours"] = "never"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    q = load_queues(settings.queues_dir)
    assert voice_target(q, "en") == "en"
    assert voice_target(q, "zh") == "ivr"  # closed now: the IVR plays the night route
    assert voice_target(q, "ko") == "ivr"  # Korean callers get the menu
    assert voice_target(q, "sign-video") == "ivr" and voice_target(q, "xx") == "ivr"


async def test_a_call_can_be_rated_once_with_its_credential_for_a_few_hours(db: Database) -> None:
    clock = Clock()
    issue = issuer(db, clock)
    first, second = await issue.mint("video", "a"), await issue.mint("video", "b")
    assert await reason_of(issue.redeem_survey, first.username, second.password) == "invalid"  # not its password
    assert (await issue.redeem_survey(first.username, first.password)).issued_at == first.issued_at
    assert await reason_of(issue.redeem_survey, first.username, first.password) == "invalid"  # once
    clock.now += 7 * 3600
    assert await reason_of(issue.redeem_survey, second.username, second.password) == "expired"
