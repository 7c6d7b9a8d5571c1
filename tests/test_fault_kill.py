"""Fault: ``kill -9`` of a dasan service in the middle of a 500-call load, then a restart.

Each service runs as ``dasan up --only <service>`` in its own process (a real SIGKILL: no
shutdown code runs). After the restart, every call that finished has exactly one complete
record, calls cut by the kill are closed rather than left open, and new calls work.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from test_fault_kit import ROOT, Dasan
from test_fault_redis import calls

from ivr.config import Settings
from ivr.messaging.providers.generic import GENERIC_HEADER, generic_signature
from tests.support.ami_peer import AmiPeer
from tests.support.data import CAPTURED_WAV

CALLS = 500
SMS_SECRET = "fault-webhook-secret"


def _env(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DASAN__DATABASE__URL": settings.database_url, "DASAN__DATA_DIR": str(tmp_path / "var"),
            "DASAN__RECORDINGS__DIR": str(tmp_path / "recordings"), "DASAN__WEB__PORT": "0",
            "DASAN__AGI__PORT": "0", "DASAN__SPEECH__ENABLED": "false", "DASAN_CONFIG": "/dev/null", **extra}


def _rows(db_file: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_file, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def _complete(db_file: Path) -> set[str]:
    return {str(r[0]) for r in _rows(db_file, "SELECT call_id FROM contacts WHERE ended_at IS NOT NULL "
                                              "AND outcome = 'answered' AND talk_seconds = 6")}


async def _until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def call_id(n: int) -> str:
    return f"1810000000.{2 * n}"


async def test_kill9_ami_bridge_during_500_calls(settings: Settings, tmp_path: Path) -> None:
    db_file = Path(settings.database_url.split("///", 1)[1])
    peer = AmiPeer("fault", "fault-secret")
    port = await peer.start()
    env = _env(settings, tmp_path, DASAN__AMI__PORT=str(port), DASAN__AMI__USERNAME="fault",
               DASAN__AMI__SECRET="fault-secret", DASAN__AMI__RECONNECT_MAX_SECONDS="1")
    bridge = Dasan(["ami"], env, ROOT)
    try:
        await asyncio.to_thread(bridge.start)
        await peer.wait_login(1, timeout=20)
        await peer.play(calls(0, 200))
        first = {call_id(n) for n in range(200)}
        await _until(lambda: first <= _complete(db_file), 30, "the first 200 calls committed")

        # Calls 200-299 are under way when the bridge is killed; what Asterisk sends meanwhile
        # is never delivered (AMI keeps no backlog for a client that is gone).
        middle = asyncio.create_task(peer.play(calls(200, 100)))
        middle_ids = [call_id(n) for n in range(200, 300)]

        def middle_begun() -> bool:  # the bridge has written the first of them: it is under way
            marks = ",".join("?" * len(middle_ids))
            return bool(_rows(db_file, f"SELECT 1 FROM contacts WHERE call_id IN ({marks})", middle_ids))

        await _until(middle_begun, 30, "the middle calls reaching the database")
        bridge.kill9()
        await middle

        await asyncio.to_thread(bridge.start)
        await peer.wait_login(2, timeout=20)
        await peer.play(calls(300, CALLS - 300))
        last = {call_id(n) for n in range(300, CALLS)}
        await _until(lambda: last <= _complete(db_file), 30, "the calls after the restart committed")
        # The resync after the restart closes the calls the kill cut (they hung up meanwhile).
        await _until(lambda: not _rows(db_file, "SELECT call_id FROM contacts WHERE ended_at IS NULL"), 30,
                     "the resync closing the calls cut by the kill")

        rows = _rows(db_file, "SELECT call_id, count(*) FROM contacts GROUP BY call_id")
        per_call = {row[0]: row[1] for row in rows}
        doubled = {k: v for k, v in per_call.items() if v != 1}
        assert not doubled, f"calls with more than one record: {doubled}"
        assert first | last <= _complete(db_file), "every call that finished has one complete record"
        left_open = _rows(db_file, "SELECT call_id FROM contacts WHERE ended_at IS NULL")
        assert not left_open, f"calls cut by the kill left open: {left_open[:5]}"
        cut = {call_id(n) for n in range(200, 300)} - _complete(db_file)
        assert cut, "the kill came after the middle calls were all in: nothing was tested"
        dup_events = _rows(db_file, "SELECT external_id, count(*) FROM contact_events "
                                    "GROUP BY external_id HAVING count(*) > 1")
        assert not dup_events, dup_events[:5]
    finally:
        bridge.stop()
        await peer.close()


async def _post_sms(http: aiohttp.ClientSession, base: str, n: int, run: str) -> int:
    body = json.dumps({"message_id": f"kill-{run}-{n}", "from": f"+8210{n:08d}", "to": "120",
                       "body": f"가로등 고장 신고 #{n}"}).encode()
    headers = {GENERIC_HEADER: generic_signature(SMS_SECRET, body), "Content-Type": "application/json"}
    try:
        async with http.post(f"{base}/webhooks/sms", data=body, headers=headers) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0  # the connection died with the server


async def test_kill9_messaging_during_500_webhooks(settings: Settings, tmp_path: Path) -> None:
    """The provider retries every webhook that did not get its 200 (and, being a provider,
    some that did): after the restart there is exactly one message per provider message id."""
    db_file = Path(settings.database_url.split("///", 1)[1])
    env = _env(settings, tmp_path, DASAN__SMS__WEBHOOK_SECRET=SMS_SECRET)
    web = Dasan(["web"], env, ROOT)
    run = uuid.uuid4().hex[:6]
    acked: set[int] = set()
    try:
        await asyncio.to_thread(web.start)
        base = f"http://127.0.0.1:{web.port('web')}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            pending = list(range(CALLS))
            killed = False

            async def lane(numbers: list[int]) -> None:
                nonlocal killed
                for n in numbers:
                    if await _post_sms(http, base, n, run) == 200:
                        acked.add(n)
                    if len(acked) >= 150 and not killed:
                        killed = True
                        web.kill9()

            await asyncio.gather(*(lane(pending[i::10]) for i in range(10)))
        assert killed and 150 <= len(acked) < CALLS, f"the kill did not land mid-load ({len(acked)} acked)"
        stored_before = {r[0] for r in _rows(db_file, "SELECT provider_message_id FROM messages")}
        assert {f"kill-{run}-{n}" for n in acked} <= stored_before, "a 200 was sent before the commit"

        await asyncio.to_thread(web.start)
        base = f"http://127.0.0.1:{web.port('web')}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            retry = [n for n in range(CALLS) if n not in acked] + sorted(acked)[:50]

            async def retry_lane(numbers: list[int]) -> None:
                for n in numbers:
                    status = await _post_sms(http, base, n, run)
                    assert status == 200, f"retry of {n} got {status}"

            await asyncio.gather(*(retry_lane(retry[i::10]) for i in range(10)))
        per_id = _rows(db_file, "SELECT provider_message_id, count(*) FROM messages GROUP BY provider_message_id")
        assert len(per_id) == CALLS and all(c == 1 for _, c in per_id), "exactly one message per webhook"
        contacts = _rows(db_file, "SELECT count(DISTINCT contact_id), count(*) FROM messages")
        assert contacts[0][0] == CALLS, "one contact per sender (500 senders), none doubled"
    finally:
        web.stop()


async def test_kill9_transcription_worker_mid_jobs(settings: Settings, tmp_path: Path) -> None:
    """In-process bus: the database is the record of what is still to do. A worker killed in
    the middle leaves recordings ``running``; the restarted one finishes each exactly once."""
    from ivr.db import Database
    from ivr.db.models import Channel
    from ivr.recordings.store import import_file, index_file
    from ivr.records import open_contact

    captured = CAPTURED_WAV.read_bytes()
    # The first 2 s of the captured call (8 kHz 16-bit mono): short jobs keep the test bounded.
    data = captured[44 : 44 + 32000]
    short = tmp_path / "short.wav"
    short.write_bytes(b"RIFF" + (36 + len(data)).to_bytes(4, "little") + captured[8:40]
                      + len(data).to_bytes(4, "little") + data)
    db_file = Path(settings.database_url.split("///", 1)[1])
    root = tmp_path / "recordings"
    count = 3
    db = Database(settings.database_url)
    async with db.transaction() as s:
        for n in range(count):
            cid = f"1830000000.{n}"
            contact = await open_contact(s, Channel.voice, call_id=cid, language="ko")
            path = import_file(root, short, call_id=cid)
            await index_file(s, root, path, call_id=cid, contact_id=contact.id)
    await db.dispose()
    env = _env(settings, tmp_path, DASAN__SPEECH__ENABLED="true", DASAN__SPEECH__WORKERS="1")
    worker = Dasan(["transcribe"], env, ROOT)

    def done() -> int:
        return int(_rows(db_file, "SELECT count(*) FROM recordings WHERE transcription_status = 'done'")[0][0])

    def running() -> int:
        return int(_rows(db_file, "SELECT count(*) FROM recordings WHERE transcription_status = 'running'")[0][0])

    try:
        await asyncio.to_thread(worker.start)
        await _until(lambda: running() >= 1, 20, "a transcription under way")
        worker.kill9()
        assert done() < count, "all were done before the kill: nothing was tested"
        assert running() == 1, "the killed job is left 'running' in the database"
        await asyncio.to_thread(worker.start)
        await _until(lambda: done() == count, 55, "every recording transcribed after the restart")
        per_recording = _rows(db_file, "SELECT target, count(*) FROM audit_log WHERE action = 'transcribed' "
                                       "GROUP BY target")
        assert len(per_recording) == count and all(c == 1 for _, c in per_recording), per_recording
        statuses = _rows(db_file, "SELECT transcription_status, count(*) FROM recordings GROUP BY 1")
        assert statuses == [("done", count)], statuses
    finally:
        worker.stop()


async def test_kill9_fastagi_during_500_calls(settings: Settings, tmp_path: Path) -> None:
    """Calls in flight when the FastAGI server dies lose their AGI connection: Asterisk sets
    AGISTATUS and the dialplan sends the caller to the default queue (docs/contracts.md), so
    the caller still reaches a counsellor. Every call the IVR finished keeps one complete record."""
    from test_fuzz_agi import Driver

    db_file = Path(settings.database_url.split("///", 1)[1])
    server = Dasan(["agi"], _env(settings, tmp_path), ROOT)
    finished: set[str] = set()
    cut: set[str] = set()
    try:
        await asyncio.to_thread(server.start)
        port = server.port("agi")
        numbers = iter(range(1, CALLS + 1))
        killed = False

        async def lane() -> None:
            nonlocal killed, port
            for n in numbers:
                driver = Driver(port, n, ["1", "2"], [], [])
                try:
                    await driver.run(timeout=30)
                except (ConnectionError, OSError, TimeoutError):
                    pass
                call_id = f"1840000000.{n}"
                (finished if driver.variables.get("IVR_RESULT") == "queue" else cut).add(call_id)
                if len(finished) >= 200 and not killed:
                    killed = True
                    server.kill9()
                    await asyncio.to_thread(server.start)
                    port = server.port("agi")

        await asyncio.gather(*(lane() for _ in range(20)))
        assert killed and cut, f"the kill did not cut any call ({len(finished)} finished)"
        assert len(finished) + len(cut) == CALLS
        per_call = {row[0]: row[1] for row in _rows(db_file, "SELECT call_id, count(*) FROM contacts GROUP BY call_id")}
        assert all(c == 1 for c in per_call.values()), {k: v for k, v in per_call.items() if v != 1}
        complete = {str(r[0]) for r in _rows(db_file, """
            SELECT c.call_id FROM contacts c JOIN contact_events e ON e.contact_id = c.id
            WHERE e.kind = 'ivr_finished' AND c.queue = 'general-ko' AND c.topic = 'transport'
              AND c.ivr_path != ''""")}
        assert finished <= complete, f"finished calls without a complete record: {sorted(finished - complete)[:5]}"
    finally:
        server.stop()
