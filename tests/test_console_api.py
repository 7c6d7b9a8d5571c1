"""The console's endpoints over HTTP on a real socket, on SQLite and PostgreSQL: records,
reviewer search, waveform peaks, quality reviews, admin validation/history, prompt upload
(real ffmpeg conversion), the language switch, and the ``dasan user add`` command."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from ivr.config import Settings
from ivr.console.models import ConfigChange
from ivr.db.models import AuditLog, Contact, User
from tests.support.console import Console


async def test_record_is_saved_and_guarded(console: Console, login: Any) -> None:
    agent = await login("kim.minji")
    ids = console.ids
    status, body = await agent.call("GET", f"/api/console/contacts/{ids['current']}")
    assert status == 200
    assert [c["id"] for c in body["earlier"]] == [ids["recorded"], ids["earlier"]]  # newest first
    assert body["citizen"]["identity"] == "+821012345678"

    status, body = await agent.call("POST", f"/api/console/contacts/{ids['current']}/record",
                                    json={"category": "nope", "notes": "x"})
    assert status == 400 and "category" in body["error"]
    status, body = await agent.call("POST", f"/api/console/contacts/{ids['current']}/record",
                                    json={"notes": "x", "resolution": "maybe"})
    assert status == 400 and "resolution" in body["error"]
    # Another agent's contact: refused, and nothing changes.
    status, _ = await agent.call("POST", f"/api/console/contacts/{ids['recorded']}/record", json={"notes": "mine"})
    assert status == 403
    status, _ = await agent.call("POST", "/api/console/contacts/999999/record", json={"notes": "x"})
    assert status == 404

    sub = await console.ctx.bus.subscribe("contact.updated")
    status, _ = await agent.call("POST", f"/api/console/contacts/{ids['current']}/record",
                                 json={"category": "waste", "notes": "대형 폐기물 신고 방법 안내", "resolution": "callback"})
    assert status == 200
    assert (await sub.get(timeout=5)) == {"contact_id": ids["current"], "fields": ["notes", "resolution", "category_id"]}
    await sub.close()
    async with console.ctx.db.session() as session:
        contact = await session.get(Contact, ids["recorded"])
        assert contact is not None and contact.notes == "470번 버스 노선 변경 안내"
        contact = await session.get(Contact, ids["current"])
        assert contact is not None and (contact.notes, contact.resolution) == ("대형 폐기물 신고 방법 안내", "callback")
    # The record is searchable at once (knowledge search).
    status, body = await agent.call("GET", "/api/console/kb", params={"q": "폐기물"})
    assert status == 200 and [i["contact"]["id"] for i in body["items"]] == [ids["current"]]
    status, _ = await agent.call("GET", "/api/console/kb", params={"q": " "})
    assert status == 400
    status, body = await agent.call("GET", "/api/console/inbox")
    assert status == 200
    assert [(c["id"], c["from"], [m["body"] for m in c["messages"]]) for c in body["items"]] == [
        (ids["sms"], "+821099998888", ["가로등이 고장났어요"])]


async def test_agent_state_commands_go_to_the_bridge(console: Console, login: Any) -> None:
    agent = await login("kim.minji")
    for body in ({"action": "login"}, {"action": "pause", "reason": "교육"}, {"action": "unpause"},
                 {"action": "logout"}):
        status, answer = await agent.call("POST", "/api/console/agent/state", json=body)
        assert status == 202 and answer["queued"]
    status, _ = await agent.call("POST", "/api/console/agent/state", json={"action": "reboot"})
    assert status == 400
    jobs = await console.ctx.bus.consume("agent.commands", "t", "t", count=10, block=2)
    assert [j.data for j in jobs] == [
        {"action": "login", "username": "kim.minji"}, {"action": "pause", "username": "kim.minji", "reason": "교육"},
        {"action": "unpause", "username": "kim.minji"}, {"action": "logout", "username": "kim.minji"}]
    status, body = await agent.call("GET", "/api/console/agent/state")
    assert status == 200 and body["state"] == "logged_out"


async def test_reviewer_search_filters_and_peaks(console: Console, login: Any) -> None:
    reviewer = await login("review1")
    rec = console.ids["recording"]

    async def found(**params: str) -> list[int]:
        status, body = await reviewer.call("GET", "/api/console/recordings", params=params)
        assert status == 200, body
        return [i["id"] for i in body["items"]]

    assert await found() == [rec]
    assert await found(q="정류장 위치") == [rec]
    assert await found(q="지하철") == []
    assert await found(queue="general-ko", agent="lee.junho", category="transport.bus", satisfaction="4") == [rec]
    assert await found(agent="kim.minji") == []
    assert await found(satisfaction="5") == []
    assert await found(**{"from": "2000-01-01", "to": "2000-01-02"}) == []
    status, _ = await reviewer.call("GET", "/api/console/recordings", params={"from": "yesterday"})
    assert status == 400

    status, body = await reviewer.call("GET", f"/api/console/recordings/{rec}/peaks", params={"n": "60"})
    assert status == 200 and abs(body["duration"] - 6.0) < 0.01 and len(body["peaks"]) == 60
    # The tone gets louder each second for three seconds (0.2, 0.4, 0.6), then again.
    first, second, third = body["peaks"][5], body["peaks"][15], body["peaks"][25]
    assert 0.15 < first < 0.25 and 0.35 < second < 0.45 and 0.55 < third < 0.65
    status, _ = await reviewer.call("GET", "/api/console/recordings/424242/peaks")
    assert status == 404

    status, body = await reviewer.call("POST", f"/api/console/recordings/{rec}/reviews",
                                       json={"scores": {"greeting": 5, "accuracy": 4, "empathy": 6, "resolution": 5}})
    assert status == 400 and "empathy" in body["error"]
    status, body = await reviewer.call("POST", f"/api/console/recordings/{rec}/reviews",
                                       json={"scores": {"greeting": 5, "accuracy": 4, "empathy": 5, "resolution": 5},
                                             "comment": "좋음"})
    assert status == 201 and body["total"] == 95
    status, body = await reviewer.call("GET", f"/api/console/recordings/{rec}/reviews")
    assert body["average"] == 95 and body["items"][0]["reviewer"] == "review1"
    async with console.ctx.db.session() as session:
        actions = {a.action for a in (await session.execute(select(AuditLog))).scalars()}
    assert {"recordings_searched", "recording_peaks", "quality_review"} <= actions


async def test_admin_validates_and_keeps_history(console: Console, login: Any) -> None:
    admin = await login("super1")  # supervisors administer too
    status, body = await admin.call("GET", "/api/console/admin/file", params={"file": "agents"})
    assert status == 200 and "kim.minji" in body["text"]
    text, version = body["text"], body["sha256"]

    bad = text.replace("skills: {general-ko: 5, general-wide: 5, en: 3}", "skills: {general-ko: 9}", 1)
    status, body = await admin.call("POST", "/api/console/admin/validate", params={"file": "agents"}, json={"text": bad})
    assert status == 200 and not body["valid"]
    assert any(p.startswith("agents.yaml:") and "proficiency 9" in p for p in body["problems"]), body
    status, body = await admin.call("POST", "/api/console/admin/file", params={"file": "agents"},
                                    json={"text": bad, "sha256": version})
    assert status == 422
    assert (console.ctx.settings.queues_dir / "agents.yaml").read_text() == text

    good = text.replace("skills: {general-ko: 5, general-wide: 5, en: 3}", "skills: {general-ko: 5, general-wide: 5, en: 4}", 1)
    status, body = await admin.call("POST", "/api/console/admin/file", params={"file": "agents"},
                                    json={"text": good, "sha256": version, "comment": "영어 숙련도 상향"})
    # Nothing answers AMI here: the valid file is written, the history says Asterisk was not
    # reached, and an asterisk.apply job is queued for the bridge to retry.
    assert status == 200 and body["status"] == "failed" and "not reachable" in body["result"], body
    jobs = await console.ctx.bus.consume("asterisk.apply", "t", "t", count=5, block=2)
    assert [j.data for j in jobs] == [{"requested_by": "super1"}]
    assert "en: 4" in (console.ctx.settings.queues_dir / "agents.yaml").read_text()
    # A second save based on the old version would overwrite someone's change: refused.
    status, body = await admin.call("POST", "/api/console/admin/file", params={"file": "agents"},
                                    json={"text": text, "sha256": version})
    assert status == 409
    status, body = await admin.call("GET", "/api/console/admin/history")
    assert [(c["author"], c["kind"], c["comment"]) for c in body["items"]] == [("super1", "agents", "영어 숙련도 상향")]
    assert "-    skills: {general-ko: 5, general-wide: 5, en: 3}" in body["items"][0]["diff"]
    status, _ = await admin.call("GET", "/api/console/admin/file", params={"file": "../../etc/passwd"})
    assert status == 404


async def test_proficiencies_grid_edits_agents_yaml_in_place(console: Console, login: Any) -> None:
    admin = await login("admin1")
    path = console.ctx.settings.queues_dir / "agents.yaml"
    before = path.read_text()
    status, body = await admin.call("POST", "/api/console/admin/proficiencies",
                                    json={"skills": {"lee.junho": {"general-ko": 4, "zh": 5, "nosuch": 2}}})
    assert status == 422 and any("nosuch" in p for p in body["problems"]), body
    status, body = await admin.call("POST", "/api/console/admin/proficiencies",
                                    json={"skills": {"lee.junho": {"general-ko": 4, "zh": 7}}})
    assert status == 422 and any("proficiency 7" in p for p in body["problems"]), body
    status, body = await admin.call("POST", "/api/console/admin/proficiencies", json={"skills": ["x"]})
    assert status == 400
    assert path.read_text() == before
    status, body = await admin.call("POST", "/api/console/admin/proficiencies", json={
        "skills": {"lee.junho": {"general-ko": 2, "zh": 5}, "kim.minji": {"general-ko": 5, "general-wide": 5, "en": 3}},
        "comment": "이준호 일반상담 축소"})
    assert status == 200, body
    after = path.read_text()
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ["    skills: {general-ko: 2, zh: 5}"]  # only lee.junho's line; comments kept
    assert body["diff"].count("\n-    skills") == 1
async def test_menus_and_queues_are_checked_together(console: Console, login: Any) -> None:
    admin = await login("admin1")
    status, body = await admin.call("GET", "/api/console/admin/file", params={"file": "menu:main.yaml"})
    assert status == 200 and "queues:" in body["text"]
    menu = body["text"]
    # A menu that sends English callers to a queue that does not exist.
    status, body = await admin.call("POST", "/api/console/admin/validate", params={"file": "menu:main.yaml"},
                                    json={"text": menu.replace("  en: en\n", "  en: english\n", 1)})
    assert not body["valid"] and any("main.yaml:" in p and "english" in p for p in body["problems"]), body
    # Removing a queue the menu still routes to (zh) from queues.yaml.
    status, body = await admin.call("GET", "/api/console/admin/file", params={"file": "queues"})
    queues = body["text"]
    start = queues.index("  zh:\n")
    end = queues.index("\n  ja:\n")
    without_zh = queues[:start] + queues[end + 1:]
    status, body = await admin.call("POST", "/api/console/admin/file", params={"file": "queues"},
                                    json={"text": without_zh, "sha256": body["sha256"]})
    assert status == 422, body
    assert any("zh" in p for p in body["problems"]), body
    assert (console.ctx.settings.queues_dir / "queues.yaml").read_text() == queues
    status, body = await admin.call("POST", "/api/console/admin/validate", params={"file": "menu:main.yaml"},
                                    json={"text": "just: [unclosed"})
    assert not body["valid"] and body["problems"][0].startswith("main.yaml")


@pytest.fixture
def mp3(tmp_path: Path) -> Path:
    """A real 44.1 kHz stereo MP3, as an admin would upload from a studio recording."""
    source = tmp_path / "greeting.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=1.5",
                    "-ar", "44100", "-ac", "2", str(source)], check=True)
    return source


async def test_prompt_upload_is_converted_for_asterisk(console: Console, login: Any, mp3: Path) -> None:
    admin = await login("admin1")
    source = mp3
    form = aiohttp.FormData()
    form.add_field("name", "welcome-night")
    form.add_field("language", "ko")
    form.add_field("file", source.read_bytes(), filename="greeting.mp3", content_type="audio/mpeg")
    status, body = await admin.call("POST", "/api/console/admin/prompts", data=form)
    assert status == 201, body
    target = console.ctx.settings.asterisk.sounds_dir / "ko" / "dasan" / "welcome-night.wav"
    assert body["sound"] == "dasan/welcome-night" and body["path"] == "ko/dasan/welcome-night.wav"
    assert str(console.ctx.settings.asterisk.sounds_dir) not in str(body)  # no server paths (issue #21)
    with wave.open(str(target)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert abs(w.getnframes() / 8000 - 1.5) < 0.05

    form = aiohttp.FormData()
    form.add_field("name", "broken")
    form.add_field("language", "ko")
    form.add_field("file", b"this is not audio at all", filename="x.wav", content_type="audio/wav")
    status, body = await admin.call("POST", "/api/console/admin/prompts", data=form)
    assert status == 422
    assert not (target.parent / "broken.wav").exists()
    form = aiohttp.FormData()
    form.add_field("name", "../evil")
    form.add_field("language", "ko")
    form.add_field("file", source.read_bytes(), filename="x.mp3")
    status, _ = await admin.call("POST", "/api/console/admin/prompts", data=form)
    assert status == 400
    # A malformed multipart body (a control character in a part header) is a clear 400, not a crash.
    broken = (b'--XyZ\r\nContent-Disposition: form-data; name="a\x03b"\r\n\r\nvalue\r\n--XyZ--\r\n')
    status, body = await admin.call("POST", "/api/console/admin/prompts", data=broken,
                                    headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert status == 400, body
    async with console.ctx.db.session() as session:
        kinds = [c.kind for c in (await session.execute(select(ConfigChange))).scalars()]
    assert kinds == ["prompt"]


async def test_language_switch_is_kept_per_user(console: Console, login: Any) -> None:
    agent = await login("kim.minji")
    status, page = await agent.call("GET", "/console/agent")
    assert status == 200 and "상담 기록" in page
    status, _ = await agent.call("POST", "/api/console/language", json={"language": "fr"})
    assert status == 400
    status, _ = await agent.call("POST", "/api/console/language", json={"language": "en"})
    assert status == 200
    status, page = await agent.call("GET", "/console/agent")
    assert "Counselling record" in page and "상담 기록" not in page
    async with console.ctx.db.session() as session:
        user = (await session.execute(select(User).where(User.username == "kim.minji"))).scalar_one()
        assert user.language == "en"
    again = await login("kim.minji")  # a new session starts in the saved language
    status, page = await again.call("GET", "/console/agent")
    assert "Counselling record" in page


async def test_wallboard_data_counts_today(console: Console, login: Any) -> None:
    viewer = await login("review1")
    status, body = await viewer.call("GET", "/api/console/wallboard")
    assert status == 200
    async with console.ctx.db.session() as session:
        from datetime import UTC, datetime, time
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(console.ctx.settings.timezone)
        start = datetime.combine(datetime.now(tz).date(), time(0), tz)
        today = [c for c in (await session.execute(select(Contact))).scalars()
                 if (c.started_at if c.started_at.tzinfo else c.started_at.replace(tzinfo=UTC)) >= start]
    assert sum(body["by_hour"]) == len(today) and len(body["by_hour"]) == 24
    assert "queues" in body["metrics"] and "general-ko" in body["metrics"]["queues"]


def test_cli_user_add(tmp_path: Path) -> None:
    env = {"DASAN__DATA_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "ivr.cli"]
    done = subprocess.run([*cli, "user", "add", "--username", "lee", "--role", "reviewer", "--password",
                           "long-enough-1", "--language", "en"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "user lee: role reviewer, language en"
    refused = subprocess.run([*cli, "user", "add", "--username", "x", "--role", "boss", "--password", "long-enough-1"],
                             env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "role must be one of" in refused.stderr
    short = subprocess.run([*cli, "user", "add", "--username", "x", "--role", "agent", "--password", "short"],
                           env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert short.returncode == 2
    listed = subprocess.run([*cli, "user", "list"], env=env, capture_output=True, text=True)
    assert listed.stdout.split() == ["lee", "reviewer", "en", "active"]


async def test_cli_user_can_sign_in(tmp_path: Path, settings: Settings) -> None:
    from ivr.web.auth import verify_password

    env = {"DASAN__DATABASE__URL": settings.database.url, "PATH": "/usr/bin:/bin"}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ivr.cli", "user", "add", "--username", "kim", "--role", "agent",
                         "--password", "s3cret-pass"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    from ivr.db import Database

    db = Database(settings.database.url)
    try:
        async with db.session() as session:
            user = (await session.execute(select(User).where(User.username == "kim"))).scalar_one()
        assert user.password_hash != "s3cret-pass" and verify_password(user.password_hash, "s3cret-pass")
        assert (user.role, user.language) == ("agent", "ko")
    finally:
        await db.dispose()


async def test_agent_socket_carries_only_my_screen_pops_and_state(console: Console, login: Any) -> None:
    """Every agent's screen-pop (caller number, earlier inquiries) goes over one bus topic: the
    socket must pass on the signed-in agent's alone."""
    agent = await login("kim.minji")
    bus = console.ctx.bus
    async with agent.session.ws_connect(f"{console.url}/ws/console/agent") as ws:
        assert await ws.receive_json(timeout=20) == {"type": "hello", "username": "kim.minji"}
        # Then the phone system's state as this process knows it: no bridge has spoken (ami off).
        assert await ws.receive_json(timeout=20) == {"type": "phone", "known": False, "connected": False,
                                                     "reason": None, "problem": None, "every": 5}
        await bus.publish("agent.screenpop", {"username": "lee.junho", "caller": "+821011112222"})
        await bus.publish("live.agents", {"username": "lee.junho", "state": "paused"})
        await bus.publish("agent.screenpop", {"username": "kim.minji", "caller": "+821033334444"})
        await bus.publish("live.agents", {"username": "kim.minji", "state": "available"})
        got = [await ws.receive_json(timeout=20) for _ in range(2)]
    by_type = {frame["type"]: frame for frame in got}
    assert by_type == {"screenpop": {"type": "screenpop", "username": "kim.minji", "caller": "+821033334444"},
                       "agent": {"type": "agent", "username": "kim.minji", "state": "available"}}
