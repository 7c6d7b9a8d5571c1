"""``dasan recordings check|purge|import FILE|hold ID``: the store from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ivr import sitetime
from ivr.cli import with_context as _with_context


def _check(args: argparse.Namespace) -> int:
    from ivr.recordings.store import check_integrity

    async def run(ctx: Any) -> int:
        root = ctx.settings.recordings.dir
        async with ctx.db.transaction() as session:
            report = await check_integrity(session, root, index_new=not args.no_index)
        print(f"recordings: {report.checked} checked, {report.ok} ok, {len(report.problems)} with problems "
              f"/ 점검 {report.checked}건, 정상 {report.ok}건, 문제 {len(report.problems)}건 ({root})")
        for path, integrity, reason in report.problems:
            print(f"  {integrity:8} {path}: {reason}")
        for path in report.unindexed:
            print(f"  {'indexed' if not args.no_index else 'unindexed':8} {path}")
        return 1 if report.problems else 0

    return asyncio.run(_with_context(args, run))


def _purge(args: argparse.Namespace) -> int:
    from ivr.recordings.retention import purge

    async def run(ctx: Any) -> int:
        async with ctx.db.transaction() as session:
            purged = await purge(session, ctx.settings.recordings, ctx.settings.recordings.dir,
                                 dry_run=args.dry_run, actor=args.actor)
        verb = "would purge" if args.dry_run else "purged"
        print(f"recordings: {verb} {len(purged)} / 보존 기간이 지난 녹음 {len(purged)}건"
              f"{' (미리보기)' if args.dry_run else ' 삭제'}")
        for p in purged:
            print(f"  {p.recording_id} {p.path} recorded {p.recorded_at:%Y-%m-%d} rule {p.rule}"
                  f"{'' if args.dry_run or p.file_removed else ' (file was already gone)'}")
        return 0

    return asyncio.run(_with_context(args, run))


def _import(args: argparse.Namespace) -> int:
    from ivr.recordings.store import StoreError, import_file, index_file
    from ivr.speech.audio import recording_stem
    from ivr.speech.worker import enqueue_recording

    async def run(ctx: Any) -> int:
        root = ctx.settings.recordings.dir
        # a bare date is the site's day (noon: clear of any zone's midnight)
        started = (datetime.fromisoformat(args.date).replace(hour=12, tzinfo=sitetime.zone()) if args.date
                   else None)
        try:
            target = import_file(root, Path(args.file), call_id=args.call_id, started=started)
        except (StoreError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        async with ctx.db.transaction() as session:
            rec = await index_file(session, root, target, contact_id=args.contact_id)
            summary = (f"recording {rec.id}: {rec.path} {rec.format} {rec.channels or '?'}ch "
                       f"{rec.sample_rate or '?'} Hz {rec.duration_seconds or 0:.1f} s "
                       f"sha256 {(rec.sha256 or '')[:12]} integrity {rec.integrity}")
            ok, error, contact = rec.integrity == "ok", rec.transcription_error, rec.contact_id
        print(summary)
        if not ok:
            print(f"  not transcribed: {error}")
            return 1
        if not args.no_transcribe:
            job = await enqueue_recording(ctx.bus, target, call_id=recording_stem(target.name), contact_id=contact)
            print(f"  queued for transcription ({ctx.settings.bus.backend} job {job}) / 전사 대기열에 추가")
            if ctx.settings.bus.backend == "memory":
                print("  note: the in-process bus ends with this command; `dasan transcribe` or `dasan up` "
                      "picks pending recordings up from the database on start")
        return 0

    return asyncio.run(_with_context(args, run))


def _hold(args: argparse.Namespace) -> int:
    from ivr.db.models import AuditLog, Recording

    async def run(ctx: Any) -> int:
        async with ctx.db.transaction() as session:
            rec = await session.get(Recording, args.id)
            if rec is None:
                print(f"error: no recording {args.id} / 녹음이 없습니다", file=sys.stderr)
                return 1
            rec.legal_hold = not args.release
            session.add(AuditLog(actor=args.actor, action="legal_hold_set" if rec.legal_hold else "legal_hold_released",
                                 target=f"recording:{rec.id}", data={"path": rec.path}))
        print(f"recording {args.id}: legal hold {'on' if not args.release else 'off'}")
        return 0

    return asyncio.run(_with_context(args, run))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rec = sub.add_parser("recordings", help="recordings store: check, purge, import, legal hold")
    rec_sub = rec.add_subparsers(dest="recordings_command", required=True)
    check = rec_sub.add_parser("check", help="verify every recording (missing, changed, unreadable)")
    check.add_argument("--no-index", action="store_true", help="report files with no index row, do not index them")
    check.set_defaults(func=_check)
    purge = rec_sub.add_parser("purge", help="delete recordings past retention (legal hold is kept)")
    purge.add_argument("--dry-run", action="store_true", help="list what would be removed")
    purge.add_argument("--actor", default="cli", help="name written to the audit log")
    purge.set_defaults(func=_purge)
    imp = rec_sub.add_parser("import", help="copy a recording into the store, index it, queue transcription")
    imp.add_argument("file")
    imp.add_argument("--call-id", help="call id (Linkedid); default: the file name without extension")
    imp.add_argument("--date", help="recording date YYYY-MM-DD (default: the file's modification time)")
    imp.add_argument("--contact-id", type=int)
    imp.add_argument("--no-transcribe", action="store_true")
    imp.set_defaults(func=_import)
    hold = rec_sub.add_parser("hold", help="put a recording under legal hold (or --release it)")
    hold.add_argument("id", type=int)
    hold.add_argument("--release", action="store_true")
    hold.add_argument("--actor", default="cli")
    hold.set_defaults(func=_hold)
