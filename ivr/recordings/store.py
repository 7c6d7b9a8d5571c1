"""The recordings store: layout on disk, the index in the database, integrity checks.

Layout (docs/contracts.md; MixMonitor writes it): ``<recordings.dir>/YYYY/MM/DD/<call id>.stereo.sln``
(caller and agent interleaved, MixMonitor ``D``; older calls ``<call id>.wav``, a mono mix) where the date is the call's start in the site's time zone (``timezone:``, as the dialplan's
``STRFTIME(${EPOCH},${SITE_TZ},...)``) and the call id is Asterisk's Linkedid, which is also
``contacts.call_id``. ``recordings.path`` holds the path relative to the store, so the store
can move. Each indexed file gets its size, SHA-256, format, channels, rate and duration; the
integrity check re-reads the file and compares.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import sitetime
from ivr.db.models import Contact, Recording
from ivr.speech.audio import AudioError, decode, recording_stem, recording_suffix

AUDIO_SUFFIXES = {".wav", ".ulaw", ".ul", ".alaw", ".al", ".sln", ".sln16", ".pcm", ".raw"}
_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class StoreError(ValueError):
    """A path or call id that does not belong in the store."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def layout_path(call_id: str, started: datetime, suffix: str = ".wav") -> str:
    """``YYYY/MM/DD/<call id><suffix>`` (relative), the date the site's (``ivr.sitetime``)."""
    if not _CALL_ID.fullmatch(call_id):
        raise StoreError(f"call id {call_id!r}: letters, digits, '.', '_' and '-' only / 잘못된 통화 ID")
    day = sitetime.local(started)
    return f"{day:%Y/%m/%d}/{call_id}{suffix}"


def relative_to_store(root: Path, path: Path) -> str:
    """The path of a file inside the store, relative to it; refuses anything outside."""
    resolved = (path if path.is_absolute() else root / path).resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise StoreError(f"{path} is outside the recordings store {root} / 녹음 저장소 밖의 파일입니다") from None


def absolute(root: Path, recording: Recording) -> Path:
    return root / recording.path


@dataclass
class Probe:
    size_bytes: int
    sha256: str
    format: str | None = None
    channels: int | None = None
    sample_rate: int | None = None
    duration_seconds: float | None = None
    error: str | None = None


def probe(path: Path) -> Probe:
    """Size, checksum and audio facts of a file; ``error`` says why it is not usable audio."""
    result = Probe(path.stat().st_size, sha256_file(path))
    try:
        audio = decode(path)
    except AudioError as exc:
        result.error = str(exc)
        return result
    result.format, result.channels = audio.format, len(audio.channels)
    result.sample_rate, result.duration_seconds = audio.sample_rate, round(audio.duration, 3)
    return result


def apply_probe(recording: Recording, facts: Probe) -> None:
    recording.size_bytes, recording.sha256 = facts.size_bytes, facts.sha256
    recording.format = facts.format or recording.format
    recording.channels, recording.sample_rate = facts.channels, facts.sample_rate
    recording.duration_seconds = facts.duration_seconds
    recording.integrity = "ok" if facts.error is None else "corrupt"


async def index_file(session: AsyncSession, root: Path, path: Path, call_id: str | None = None,
                     contact_id: int | None = None) -> Recording:
    """Add (or refresh) the index row of a file in the store; links the contact by call id.

    Idempotent: indexing the same path again updates its row. A file that is not readable
    audio is still indexed (nothing is lost) with ``integrity='corrupt'`` and the reason.
    """
    rel = relative_to_store(root, path)
    full = root / rel
    if not full.is_file():
        raise FileNotFoundError(f"{full}: no such recording / 녹음 파일이 없습니다")
    call_id = call_id or recording_stem(rel)
    if contact_id is None:
        contact_id = (await session.execute(
            select(Contact.id).where(Contact.call_id == call_id))).scalar_one_or_none()
    recording = (await session.execute(select(Recording).where(Recording.path == rel))).scalar_one_or_none()
    if recording is None:
        # Recorded when the file was last written (MixMonitor closes it at hang-up).
        recorded = datetime.fromtimestamp(full.stat().st_mtime, UTC)
        recording = Recording(path=rel, transcription_attempts=0, transcription_status="pending",
                              created_at=recorded)
        session.add(recording)
    if contact_id is not None:
        recording.contact_id = contact_id
    facts = await asyncio.to_thread(probe, full)  # hashing a long call must not stall the loop
    apply_probe(recording, facts)
    if facts.error is not None:
        recording.transcription_status, recording.transcription_error = "failed", facts.error
    await session.flush()
    return recording


def import_file(root: Path, source: Path, call_id: str | None = None,
                started: datetime | None = None) -> Path:
    """Copy a file into the store under the layout (date from ``started`` or the file's mtime)."""
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file / 파일이 없습니다")
    suffix = recording_suffix(source.name)
    if "." + suffix.rsplit(".", 1)[-1] not in AUDIO_SUFFIXES:
        raise StoreError(f"{source.name}: not a recording format ({', '.join(sorted(AUDIO_SUFFIXES))}) "
                         "/ 녹음 형식이 아닙니다")
    when = started or datetime.fromtimestamp(source.stat().st_mtime, UTC)
    target = root / layout_path(call_id or recording_stem(source.name), when, suffix)
    if target.exists() and sha256_file(target) != sha256_file(source):
        raise StoreError(f"{target} already exists with other content / 같은 이름의 다른 녹음이 있습니다")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(source, tmp)
        stamp = when.timestamp()
        os.utime(tmp, (stamp, stamp))  # the file's time is when it was recorded (retention counts from it)
        tmp.replace(target)  # atomic: the store never shows half a file
    return target


def _probe_if_present(path: Path) -> Probe | None:
    return probe(path) if path.is_file() else None


def list_audio_files(root: Path) -> list[str]:
    """Every audio file under the store, relative, sorted (partial ``.part`` copies excluded)."""
    if not root.is_dir():
        return []
    return sorted(f.relative_to(root).as_posix() for f in root.rglob("*")
                  if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)


@dataclass
class CheckReport:
    checked: int = 0
    ok: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path, integrity, reason)
    unindexed: list[str] = field(default_factory=list)


async def check_integrity(session: AsyncSession, root: Path, index_new: bool = True) -> CheckReport:
    """Re-read every live recording: missing, changed (checksum) or unreadable files are marked.

    Files in the store with no index row are reported and, with ``index_new``, indexed.
    """
    report = CheckReport()
    rows = (await session.execute(select(Recording).where(Recording.purged_at.is_(None)))).scalars().all()
    known = {r.path for r in rows}
    for rec in rows:
        report.checked += 1
        facts = await asyncio.to_thread(_probe_if_present, root / rec.path)
        if facts is None:
            rec.integrity = "missing"
            report.problems.append((rec.path, "missing", "file not found / 파일이 없습니다"))
            continue
        if rec.sha256 and facts.sha256 != rec.sha256:
            rec.integrity = "corrupt"
            report.problems.append((rec.path, "corrupt",
                                    f"checksum changed since indexing ({rec.sha256[:12]} -> {facts.sha256[:12]}) "
                                    "/ 파일 내용이 바뀌었습니다"))
            continue
        if facts.error is not None:
            rec.integrity = "corrupt"
            report.problems.append((rec.path, "corrupt", facts.error))
            continue
        if rec.sha256 is None:
            apply_probe(rec, facts)
        rec.integrity = "ok"
        report.ok += 1
    for rel in await asyncio.to_thread(list_audio_files, root):
        if rel not in known:
            report.unindexed.append(rel)
            if index_new:
                await index_file(session, root, root / rel)
    await session.flush()
    return report
