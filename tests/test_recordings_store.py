"""The recordings store: layout, index, integrity check, retention and purge (and their CLI)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ivr.config import RecordingSettings
from ivr.db import Database
from ivr.db.models import AuditLog, Category, Channel, Contact, Recording, TranscriptSegment
from ivr.recordings.retention import purge
from ivr.recordings.store import (
    StoreError,
    check_integrity,
    import_file,
    index_file,
    layout_path,
    sha256_file,
)


def _wav(path: Path, seconds: float = 1.0, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-n", "-r", "8000", "-c", str(channels), "-b", "16", str(path), "synth", str(seconds),
                    "sine", "300", "vol", "0.3"], check=True, capture_output=True)
    return path


def test_layout_is_date_and_call_id() -> None:
    when = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # 08:30 on the 26th in Seoul, the site's zone
    assert layout_path("1795593159.8", when) == "2026/11/26/1795593159.8.wav"
    # The date is the site's day, whatever zone the time came in.
    kst = when.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Seoul"))
    assert layout_path("1795593159.8", kst) == "2026/11/26/1795593159.8.wav"
    for bad in ("../etc/passwd", "a/b", "", ".hidden"):
        with pytest.raises(StoreError):
            layout_path(bad, when)


def test_import_places_file_atomically_and_refuses_conflicts(tmp_path: Path) -> None:
    store = tmp_path / "recordings"
    src = _wav(tmp_path / "in" / "1795593159.8.wav")
    target = import_file(store, src, started=datetime(2026, 3, 4, 5, 6, tzinfo=UTC))
    assert target == store / "2026/03/04/1795593159.8.wav"
    assert sha256_file(target) == sha256_file(src)
    assert not list(store.rglob("*.part"))
    assert import_file(store, src, started=datetime(2026, 3, 4, tzinfo=UTC)) == target  # same content: no-op
    other = _wav(tmp_path / "other" / "1795593159.8.wav", seconds=2.0)
    with pytest.raises(StoreError, match="already exists"):
        import_file(store, other, started=datetime(2026, 3, 4, tzinfo=UTC))
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(StoreError, match="not a recording format"):
        import_file(store, notes)


async def test_index_records_facts_links_contact_and_is_idempotent(tmp_path: Path, db: Database) -> None:
    store = tmp_path / "recordings"
    target = import_file(store, _wav(tmp_path / "1795593159.8.wav", 2.5, channels=2))
    async with db.transaction() as session:
        contact = Contact(channel=Channel.voice, call_id="1795593159.8")
        session.add(contact)
        await session.flush()
        rec = await index_file(session, store, target)
        first_id = rec.id
    async with db.transaction() as session:
        again = await index_file(session, store, target)
        assert again.id == first_id
    async with db.session() as session:
        rec = (await session.execute(select(Recording))).scalar_one()
    assert rec.contact_id == contact.id
    assert (rec.format, rec.channels, rec.sample_rate, rec.duration_seconds) == ("wav/pcm16", 2, 8000, 2.5)
    assert rec.sha256 == sha256_file(target) and rec.size_bytes == target.stat().st_size
    assert rec.integrity == "ok" and rec.path == target.relative_to(store).as_posix()
    with pytest.raises(StoreError, match="outside"):
        async with db.transaction() as session:
            await index_file(session, store, tmp_path / "1795593159.8.wav")


async def test_integrity_check_finds_changed_missing_unreadable_and_unindexed(tmp_path: Path, db: Database) -> None:
    store = tmp_path / "recordings"
    files = {n: import_file(store, _wav(tmp_path / f"{n}.wav"), started=datetime(2026, 1, 1, tzinfo=UTC))
             for n in ("good", "changed", "gone", "broken")}
    async with db.transaction() as session:
        for f in files.values():
            await index_file(session, store, f)
    files["changed"].write_bytes(files["changed"].read_bytes()[:-100] + bytes(100))  # silent edit
    files["gone"].unlink()
    raw = files["broken"].read_bytes()
    files["broken"].write_bytes(raw[:60])  # truncated after indexing
    late = _wav(store / "2026/01/02/late.wav")  # MixMonitor wrote it, nobody indexed it
    async with db.transaction() as session:
        report = await check_integrity(session, store)
    assert report.checked == 4 and report.ok == 1
    problems = {Path(p).stem: (integrity, reason) for p, integrity, reason in report.problems}
    assert problems["changed"][0] == "corrupt" and "checksum changed" in problems["changed"][1]
    assert problems["gone"][0] == "missing"
    assert problems["broken"][0] == "corrupt"  # checksum differs too: either reason is on the record
    assert report.unindexed == [late.relative_to(store).as_posix()]
    async with db.session() as session:
        by_stem = {Path(r.path).stem: r for r in (await session.execute(select(Recording))).scalars()}
    assert {k: v.integrity for k, v in by_stem.items()} == {
        "good": "ok", "changed": "corrupt", "gone": "missing", "broken": "corrupt", "late": "ok"}


async def test_purge_follows_retention_per_category_keeps_legal_hold_and_logs(tmp_path: Path, db: Database) -> None:
    store = tmp_path / "recordings"
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    settings = RecordingSettings(dir=store, retention_days=365, retention_by_category={"complaint": 30})
    async with db.transaction() as session:
        cat = Category(code="complaint", name_ko="민원", name_en="Complaint")
        session.add(cat)
        await session.flush()
        specs = {  # name: (age in days, category, legal hold)
            "old-default": (400, None, False), "young-default": (200, None, False),
            "old-complaint": (31, cat.id, False), "young-complaint": (29, cat.id, False),
            "held": (999, None, True),
        }
        recs = {}
        for name, (age, cat_id, hold) in specs.items():
            contact = Contact(channel=Channel.voice, call_id=name, category_id=cat_id)
            session.add(contact)
            await session.flush()
            path = import_file(store, _wav(tmp_path / f"{name}.wav"), started=now - timedelta(days=age))
            rec = await index_file(session, store, path)
            rec.created_at, rec.legal_hold = now - timedelta(days=age), hold
            session.add(TranscriptSegment(recording_id=rec.id, contact_id=contact.id, start=0.1, end=0.9,
                                          text="주소는 서울시 중구입니다"))
            recs[name] = path

    async with db.transaction() as session:
        preview = await purge(session, settings, store, now=now, dry_run=True)
    assert sorted(p.path.split("/")[-1] for p in preview) == ["old-complaint.wav", "old-default.wav"]
    assert all(p.exists() for p in recs.values())  # a dry run removes nothing

    async with db.transaction() as session:
        purged = await purge(session, settings, store, now=now, actor="tester")
    assert {Path(p.path).stem: p.rule for p in purged} == {
        "old-default": "default=365d", "old-complaint": "category:complaint=30d"}
    assert not recs["old-default"].exists() and not recs["old-complaint"].exists()
    assert recs["held"].exists() and recs["young-default"].exists() and recs["young-complaint"].exists()
    async with db.session() as session:
        rows = {Path(r.path).stem: r for r in (await session.execute(select(Recording))).scalars()}
        assert rows["old-default"].purged_at is not None and rows["held"].purged_at is None
        left = (await session.execute(select(TranscriptSegment.recording_id))).scalars().all()
        assert sorted(left) == sorted(rows[n].id for n in ("young-default", "young-complaint", "held"))
        log = (await session.execute(select(AuditLog).where(AuditLog.action == "recording_purged"))).scalars().all()
        assert {a.data["path"].split("/")[-1] for a in log} == {"old-default.wav", "old-complaint.wav"}
        assert all(a.actor == "tester" and a.data["file_removed"] and len(a.data["sha256"]) == 64 for a in log)
    async with db.transaction() as session:
        assert await purge(session, settings, store, now=now) == []  # nothing twice


def test_cli_import_check_purge_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ivr.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DASAN_CONFIG", raising=False)
    for key, value in {"DASAN__DATA_DIR": str(tmp_path / "var"), "DASAN__RECORDINGS__DIR": str(tmp_path / "rec"),
                       "DASAN__RECORDINGS__RETENTION_DAYS": "1", "DASAN__BUS__BACKEND": "memory"}.items():
        monkeypatch.setenv(key, value)

    def dasan(*args: str) -> tuple[int, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    src = _wav(tmp_path / "1795593159.8.wav", 1.5)
    code, out = dasan("recordings", "import", str(src), "--date", "2026-01-05")
    assert code == 0, out
    assert "recording 1: 2026/01/05/1795593159.8.wav wav/pcm16 1ch 8000 Hz 1.5 s" in out
    assert "integrity ok" in out and "queued for transcription" in out
    empty = tmp_path / "1795593160.1.wav"
    empty.write_bytes(b"")
    code, out = dasan("recordings", "import", str(empty), "--date", "2026-01-05", "--no-transcribe")
    assert code == 1 and "integrity corrupt" in out and "empty file" in out
    code, out = dasan("recordings", "check")
    assert code == 1  # the empty one is a problem
    assert "2 checked, 1 ok, 1 with problems" in out and "1795593160.1.wav: empty file" in out
    code, out = dasan("recordings", "hold", "1")
    assert code == 0 and "legal hold on" in out
    code, out = dasan("recordings", "purge", "--dry-run")
    assert "would purge 1" in out and "1795593160.1.wav" in out
    assert (tmp_path / "rec/2026/01/05/1795593160.1.wav").exists()
    code, out = dasan("recordings", "purge")
    assert code == 0 and "purged 1" in out
    assert not (tmp_path / "rec/2026/01/05/1795593160.1.wav").exists()
    assert (tmp_path / "rec/2026/01/05/1795593159.8.wav").exists()  # legal hold
    code, out = dasan("recordings", "purge")
    assert "purged 0" in out


async def test_purge_count_query_sanity(tmp_path: Path, db: Database) -> None:
    """An empty store purges nothing and checks nothing (and says so without error)."""
    async with db.transaction() as session:
        assert await purge(session, RecordingSettings(dir=tmp_path), tmp_path) == []
        report = await check_integrity(session, tmp_path / "none")
        assert (report.checked, report.problems, report.unindexed) == (0, [], [])
        assert (await session.execute(select(func.count()).select_from(Recording))).scalar_one() == 0
