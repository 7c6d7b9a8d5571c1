"""Two ``dasan transcribe`` worker processes on the real Redis and PostgreSQL.

One worker is killed with SIGKILL in the middle of a job; the other takes the job over
(``Bus.claim_stale`` on the Redis consumer group) once it has been idle for the configured
``bus.claim_after_seconds``, and every job is done exactly once: one ``transcribed`` audit
row and one set of segments per recording, nothing left pending.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REDIS_URL
from sqlalchemy import func, select

from ivr.bus.redis import RedisBus
from ivr.db import Database
from ivr.db.models import AuditLog, Recording, TranscriptSegment
from ivr.recordings.store import import_file
from ivr.speech.worker import GROUP, STREAM, enqueue_recording
from tests.support import synth
from tests.support.synth_tools import needs_synthesis_tools  # noqa: F401  (autouse)
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
CLAIM_AFTER = 3.0  # bus.claim_after_seconds of the workers (from their configuration)


class Worker:
    """A worker subprocess whose output is collected by a thread (so its pipe never fills)."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ivr.cli", "transcribe", "--name", name],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("transcribe:") and "worker" in line:
                self.ready.set()

    @property
    def consumer(self) -> str:
        return f"{self.name}-0"

    def output(self) -> str:
        return "".join(self.lines)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def test_killed_worker_job_is_taken_over_and_each_job_done_once(
        tmp_path: Path, pg_url: str, redis_bus: RedisBus) -> None:
    store = tmp_path / "recordings"
    # One long call (so the kill lands mid-job) and three short ones.
    long_call = synth.encode(synth.placed(
        [(0.5, "안녕하세요"), (4.0, "버스 노선 문의"), (7.5, "감사합니다")],
        tmp_path / "long16.wav", 10.5), tmp_path / "1795700000.1.wav")
    paths = [import_file(store, long_call)]
    for i, text in enumerate(("안녕하세요", "교통", "감사합니다"), start=2):
        clip = synth.encode(synth.placed([(0.3, text)], tmp_path / f"s{i}.wav", 3.0), tmp_path / f"1795700000.{i}.wav")
        paths.append(import_file(store, clip))

    env = dict(os.environ)
    env.update({
        "DASAN__DATABASE__URL": pg_url, "DASAN__BUS__BACKEND": "redis", "DASAN__BUS__REDIS_URL": REDIS_URL,
        "DASAN__BUS__PREFIX": redis_bus.prefix, "DASAN__RECORDINGS__DIR": str(store),
        "DASAN__DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT),
        "DASAN__BUS__CLAIM_AFTER_SECONDS": str(CLAIM_AFTER),
    })
    workers = {name: Worker(name, env, tmp_path) for name in ("alpha", "beta")}
    db = Database(pg_url)
    try:
        for w in workers.values():
            assert await asyncio.to_thread(w.ready.wait, 120), w.output()

        long_job = await enqueue_recording(redis_bus, paths[0])
        long_rel = paths[0].relative_to(store).as_posix()

        async def long_running() -> bool:
            async with db.session() as session:
                status = (await session.execute(select(Recording.transcription_status).where(
                    Recording.path == long_rel))).scalar()
            return status == "running"

        await eventually(long_running, "the long job to start", timeout=60, interval=0.1)
        pending = await redis_bus.redis.xpending_range(redis_bus.key(STREAM), GROUP, "-", "+", 10)
        owners = {(_text(p["message_id"]), _text(p["consumer"])) for p in pending}
        assert len(owners) == 1, owners
        (job_id, owner), = owners
        assert job_id == long_job
        victim = next(w for w in workers.values() if w.consumer == owner)
        survivor = next(w for w in workers.values() if w is not victim)
        victim.proc.send_signal(signal.SIGKILL)  # mid-job: status is running, the job is unacked
        assert victim.proc.wait(30) == -signal.SIGKILL
        killed = time.monotonic()

        async def taken_over() -> bool:
            pending = await redis_bus.redis.xpending_range(redis_bus.key(STREAM), GROUP, "-", "+", 10)
            return any(_text(p["message_id"]) == long_job and _text(p["consumer"]) == survivor.consumer
                       for p in pending)

        await eventually(taken_over, "the survivor to take the long job over", timeout=CLAIM_AFTER + 30,
                         interval=0.05)
        claim_delay = time.monotonic() - killed
        print(f"transcription job taken over {claim_delay:.1f} s after the kill (claim_after {CLAIM_AFTER} s)")
        # The victim's heartbeat touched the job every CLAIM_AFTER/3: it is idle CLAIM_AFTER at
        # most CLAIM_AFTER after the kill; the survivor asks between its 1 s reads.
        assert claim_delay < CLAIM_AFTER + 3, claim_delay
        for path in paths[1:]:
            await enqueue_recording(redis_bus, path)


        async def all_done() -> bool:
            async with db.session() as session:
                statuses = (await session.execute(select(Recording.transcription_status))).scalars().all()
            return len(statuses) == 4 and all(s in ("done", "failed") for s in statuses)

        await eventually(all_done, "every recording to be transcribed", timeout=240, interval=0.2)

        async with db.session() as session:
            recs = {r.path: r for r in (await session.execute(select(Recording))).scalars()}
            assert {r.transcription_status for r in recs.values()} == {"done"}, {
                p: (r.transcription_status, r.transcription_error) for p, r in recs.items()}
            audits = (await session.execute(select(AuditLog).where(AuditLog.action == "transcribed"))).scalars().all()
            done_by: dict[str, list[str]] = {}
            for a in audits:
                done_by.setdefault(a.target, []).append(a.actor)
            # Exactly once: one completion per recording, none by the killed worker.
            assert sorted(done_by) == sorted(f"recording:{r.id}" for r in recs.values())
            assert all(len(actors) == 1 for actors in done_by.values()), done_by
            assert done_by[f"recording:{recs[long_rel].id}"] == [survivor.consumer]
            assert recs[long_rel].transcription_attempts == 2  # the killed try and the takeover
            seg_rows = (await session.execute(select(
                TranscriptSegment.recording_id, TranscriptSegment.start, TranscriptSegment.speaker))).all()
            assert len(seg_rows) == len(set(seg_rows)), "duplicated segments"
            per_rec = dict((await session.execute(select(
                TranscriptSegment.recording_id, func.count()).group_by(TranscriptSegment.recording_id))).all())
            assert per_rec[recs[long_rel].id] >= 2  # the long call's sentences, stored once
            for a in audits:
                assert a.data["segments"] == per_rec.get(int(a.target.split(":")[1]), 0)
        assert await redis_bus.pending(STREAM, GROUP) == 0
        assert f"took over job {long_job}" in survivor.output()
    finally:
        await db.dispose()
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in workers.values():
            try:
                w.proc.wait(60)
            except subprocess.TimeoutExpired:
                w.proc.kill()
    assert survivor.proc.returncode == 0, survivor.output()
    assert "transcribe: stopped" in survivor.output()
