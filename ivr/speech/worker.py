"""The transcription worker: ``recordings.finished`` jobs -> transcript segments in the database.

Jobs come from the bus stream ``recordings.finished`` (consumer group ``transcribe``): in
process by default, Redis streams when several workers run on several processes/machines.
For each job the worker indexes the file (checksum, duration, integrity), picks the model of
the contact's language, recognizes each channel (stereo: caller and agent apart) and stores
the segments, the status and an audit row in one transaction; only then is the job acked.

Nothing is dropped: bad audio (empty, truncated, corrupt, wrong format) marks the recording
``failed`` with the reason at once (retrying cannot help); other errors are retried up to
``speech.max_attempts`` and then marked ``failed`` with the last reason; a language without a
model is marked ``no_model``. A worker that dies mid-job leaves the job pending in the
group; another worker takes it over with ``Bus.claim_stale`` once it has been idle for
``claim_after`` seconds (``bus.claim_after_seconds``). A live worker keeps its job fresh
(heartbeat) so a long recording is not stolen, and the ``done`` status is set with a
conditional update, so a job that somehow runs twice still stores its transcript once. A job
whose handling raises every time (e.g. the database refuses its row) is handed out again
after each idle time and, past ``bus.max_deliveries``, moved to ``recordings.finished.dead``
with the last error (``Bus.dead_letter``) instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from ivr.bus import Bus, Job
from ivr.bus.base import undeliverable
from ivr.config import Settings
from ivr.contracts import Stream, Topic, contact_updated
from ivr.db import Database
from ivr.db.models import AuditLog, Contact, Recording, TranscriptSegment
from ivr.recordings.store import StoreError, index_file, relative_to_store
from ivr.redaction.engine import mask_segments
from ivr.speech.audio import AudioError, decode
from ivr.speech.recognizer import (
    ModelStore,
    NoModel,
    Segment,
    decoder_lines,
    shared_store,
    transcribe,
)

log = logging.getLogger(__name__)

STREAM = Stream.RECORDINGS_FINISHED
GROUP = "transcribe"


def consumer_name(index: int = 0) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


@dataclass
class Outcome:
    status: str  # done | failed | no_model | retry | skipped | rejected
    recording_id: int | None = None
    detail: str = ""


class TranscriptionWorker:
    def __init__(self, db: Database, bus: Bus, settings: Settings, name: str | None = None,
                 store: ModelStore | None = None, claim_after: float | None = None, block: float = 1.0,
                 max_deliveries: int | None = None) -> None:
        self.db, self.bus, self.settings = db, bus, settings
        self.name = name or consumer_name()
        self.store = store or shared_store(settings.speech.models, decoder_lines(settings.speech.decoder))
        self.claim_after = claim_after if claim_after is not None else settings.bus.claim_after_seconds
        self.max_deliveries = max_deliveries if max_deliveries is not None else settings.bus.max_deliveries
        self.block = block
        self.root = settings.recordings.dir
        self.jobs_done = 0
        self._failures: dict[str, str] = {}  # job id -> the last error handling it raised here

    # -- the loop --
    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        log.info("transcribe worker %s: consuming %s", self.name, STREAM)
        while not stop.is_set():
            try:
                jobs = await self.bus.claim_stale(STREAM, GROUP, self.name, self.claim_after, count=1)
                if jobs:
                    log.info("worker %s took over job %s (delivery %d)", self.name, jobs[0].id, jobs[0].deliveries)
                else:
                    jobs = await self.bus.consume(STREAM, GROUP, self.name, count=1, block=self.block)
                for job in jobs:
                    if job.deliveries > self.max_deliveries:
                        await self.bus.dead_letter(job, GROUP, undeliverable(job, self._failures.pop(job.id, None)))
                        continue
                    try:
                        await self.handle(job)
                    except Exception as exc:  # stays pending: handed out again after claim_after
                        self._failures[job.id] = f"{type(exc).__name__}: {exc}"[:500]
                        raise
                    self._failures.pop(job.id, None)
            except asyncio.CancelledError:
                raise
            except Exception:  # the bus or database is away: wait and go on, jobs stay pending
                log.exception("worker %s: loop error; retrying in 2 s", self.name)
                await asyncio.sleep(2)

    async def handle(self, job: Job) -> Outcome:
        """Process one job and ack it once its outcome is committed."""
        beat = asyncio.create_task(self._heartbeat(job))
        try:
            outcome = await self._process(job)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        await self.bus.ack(job, GROUP)
        self.jobs_done += 1
        log.info("job %s %s: recording %s %s", job.id, outcome.status, outcome.recording_id, outcome.detail)
        return outcome

    async def _heartbeat(self, job: Job) -> None:
        """Keep a job we are working on from looking abandoned to other workers."""
        while True:
            await asyncio.sleep(max(0.2, self.claim_after / 3))
            with contextlib.suppress(Exception):
                await self.bus.touch(job, GROUP, self.name)

    # -- one job --
    async def _process(self, job: Job) -> Outcome:
        data = job.data
        raw_path = data.get("path")
        if not isinstance(raw_path, str) or not raw_path:
            return await self._reject(job, "job has no 'path' / 작업에 녹음 경로가 없습니다")
        path = Path(raw_path)
        try:
            rel = relative_to_store(self.root, path)
        except StoreError as exc:
            return await self._reject(job, str(exc))
        full = self.root / rel
        max_attempts = self.settings.speech.max_attempts

        async with self.db.transaction() as session:
            rec = (await session.execute(select(Recording).where(Recording.path == rel))).scalar_one_or_none()
            contact_id = _int(data.get("contact_id"))
            if full.is_file():
                rec = await index_file(session, self.root, full, call_id=_str(data.get("call_id")),
                                       contact_id=contact_id)
            elif rec is None:
                rec = Recording(path=rel, contact_id=contact_id, transcription_attempts=0)
                session.add(rec)
                await session.flush()
            rec_id = rec.id
            if rec.transcription_status == "done":
                return Outcome("skipped", rec_id, "already transcribed")
            if rec.purged_at is not None:
                return Outcome("skipped", rec_id, "purged by retention")
            if "attempt" not in data and job.deliveries == 1:
                rec.transcription_attempts = 0  # a fresh job (e.g. re-import) starts over
            if not full.is_file():
                rec.integrity = "missing"
                return self._fail(rec, f"file not found: {rel} / 녹음 파일이 없습니다")
            if rec.transcription_attempts >= max_attempts:
                return self._fail(rec, f"gave up after {rec.transcription_attempts} attempts "
                                       "(the worker stopped during each) / 여러 번 시도했으나 실패했습니다")
            language = await self._language(session, rec, data)
            if not self.store.has(language):
                rec.transcription_status = "no_model"
                rec.transcription_error = (f"no speech model for language {language!r} "
                                           f"/ '{language}' 언어의 음성 인식 모델이 없습니다")
                return Outcome("no_model", rec_id, language)
            rec.transcription_status, rec.transcription_error = "running", None
            rec.transcription_attempts += 1
            attempt = rec.transcription_attempts

        started = time.monotonic()
        try:
            segments = await asyncio.to_thread(self._recognize, full, language)
        except (AudioError, FileNotFoundError) as exc:
            return await self._finish_failed(rec_id, str(exc), "missing" if isinstance(exc, FileNotFoundError) else "corrupt")
        except NoModel as exc:
            return await self._finish_failed(rec_id, str(exc), status="no_model")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if attempt < max_attempts:
                async with self.db.transaction() as session:
                    await session.execute(update(Recording).where(Recording.id == rec_id).values(
                        transcription_status="pending",
                        transcription_error=f"attempt {attempt} failed, retrying: {reason}"))
                # Enqueued before the ack of this job: the retry cannot be lost.
                await self.bus.enqueue(STREAM, {**data, "attempt": attempt + 1})
                return Outcome("retry", rec_id, reason)
            return await self._finish_failed(rec_id, f"failed after {attempt} attempts: {reason}")
        return await self._store(rec_id, segments, time.monotonic() - started)

    def _recognize(self, path: Path, language: str) -> list[Segment]:
        audio = decode(path)
        return masked(transcribe(audio, self.store, language, vad=self.settings.speech.vad))

    async def _language(self, session: Any, rec: Recording, data: dict[str, Any]) -> str:
        if isinstance(data.get("language"), str):
            return self.store.language_key(data["language"])
        if rec.contact_id is not None:
            lang = (await session.execute(select(Contact.language).where(Contact.id == rec.contact_id))).scalar()
            if lang:
                return self.store.language_key(lang)
        return "ko"

    def _fail(self, rec: Recording, reason: str) -> Outcome:
        rec.transcription_status, rec.transcription_error = "failed", reason
        return Outcome("failed", rec.id, reason)

    async def _finish_failed(self, rec_id: int, reason: str, integrity: str | None = None,
                             status: str = "failed") -> Outcome:
        values: dict[str, Any] = {"transcription_status": status, "transcription_error": reason}
        if integrity:
            values["integrity"] = integrity
        async with self.db.transaction() as session:
            await session.execute(update(Recording).where(Recording.id == rec_id).values(**values))
        return Outcome(status, rec_id, reason)

    async def _store(self, rec_id: int, segments: list[Segment], seconds: float) -> Outcome:
        async with self.db.transaction() as session:
            # Conditional: of two workers that both ran this job, only the first one stores.
            won = await session.execute(
                update(Recording).where(Recording.id == rec_id, Recording.transcription_status != "done")
                .values(transcription_status="done", transcription_error=None))
            if won.rowcount == 0:  # type: ignore[attr-defined]
                return Outcome("skipped", rec_id, "another worker stored it first")
            contact_id = (await session.execute(
                select(Recording.contact_id).where(Recording.id == rec_id))).scalar()
            await session.execute(delete(TranscriptSegment).where(TranscriptSegment.recording_id == rec_id))
            session.add_all(TranscriptSegment(recording_id=rec_id, contact_id=contact_id, speaker=s.speaker,
                                              start=s.start, end=s.end, text=s.text, confidence=s.confidence)
                            for s in segments)
            session.add(AuditLog(actor=self.name, action="transcribed", target=f"recording:{rec_id}",
                                 data={"segments": len(segments), "seconds": round(seconds, 3)}))
        if contact_id is not None:
            with contextlib.suppress(Exception):
                await self.bus.publish(Topic.CONTACT_UPDATED, contact_updated(contact_id, ["transcript"]))
        return Outcome("done", rec_id, f"{len(segments)} segments in {seconds:.1f} s")

    async def _reject(self, job: Job, reason: str) -> Outcome:
        """A job that names no usable recording: kept in the audit log, never silently dropped."""
        async with self.db.transaction() as session:
            session.add(AuditLog(actor=self.name, action="transcription_job_rejected", target=f"job:{job.id}",
                                 data={"reason": reason, "job": job.data}))
        log.error("job %s rejected: %s (%r)", job.id, reason, job.data)
        return Outcome("rejected", None, reason)


def masked(segments: list[Segment]) -> list[Segment]:
    """Segments with personal data masked before they are stored (and so indexed, searched and
    exported): per speaker in time order, so a number said across segments is one number."""
    out = list(segments)
    for speaker in {s.speaker for s in segments}:
        indexes = [i for i, s in enumerate(segments) if s.speaker == speaker]
        texts = mask_segments([segments[i].text for i in indexes])
        for i, text in zip(indexes, texts, strict=True):
            out[i] = replace(segments[i], text=text)
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return str(value) if value else None


async def enqueue_recording(bus: Bus, path: Path | str, call_id: str | None = None,
                            contact_id: int | None = None, **extra: Any) -> str:
    data: dict[str, Any] = {"path": str(path)}
    if call_id:
        data["call_id"] = call_id
    if contact_id is not None:
        data["contact_id"] = contact_id
    data.update(extra)
    return await bus.enqueue(STREAM, data)


async def recover_unfinished(db: Database, bus: Bus) -> int:
    """Queue again every live recording still ``pending``/``running`` in the database.

    For the in-process bus, whose jobs end with the process: after a restart the database is
    the record of what is still to do. (Redis keeps its jobs; there this is not needed.)
    """
    async with db.session() as session:
        rows = (await session.execute(
            select(Recording.path, Recording.contact_id).where(
                Recording.transcription_status.in_(("pending", "running")),
                Recording.purged_at.is_(None), Recording.integrity != "corrupt"))).all()
    for path, contact_id in rows:
        await bus.enqueue(STREAM, {"path": path, "contact_id": contact_id, "recovered": True})
    return len(rows)
