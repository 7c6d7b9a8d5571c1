"""Retention: how long a recording is kept, and the purge that removes expired ones.

A recording is kept ``recordings.retention_by_category[<category code>]`` days when its
contact has a category listed there, else ``recordings.retention_days``, counted from when it
was recorded. A recording under legal hold is never purged. Purging deletes the audio file
and the transcript segments (both hold the caller's words), keeps the index row with
``purged_at`` set (so the record shows a recording existed and when it went), and writes one
audit-log row per recording with its path, checksum and the rule that expired it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.config import RecordingSettings
from ivr.db.models import AuditLog, Category, Contact, Recording, TranscriptSegment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    recording_id: int
    path: str
    sha256: str | None
    rule: str  # "category:<code>=<days>d" or "default=<days>d"
    recorded_at: datetime
    file_removed: bool


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def expired(session: AsyncSession, settings: RecordingSettings,
                  now: datetime | None = None) -> list[tuple[Recording, str]]:
    """Recordings past their retention, not on legal hold, not purged yet, with the rule."""
    now = now or datetime.now(UTC)
    rows = (await session.execute(
        select(Recording, Category.code)
        .outerjoin(Contact, Recording.contact_id == Contact.id)
        .outerjoin(Category, Contact.category_id == Category.id)
        .where(Recording.purged_at.is_(None), Recording.legal_hold.is_(False))
        .order_by(Recording.created_at)
    )).all()
    out: list[tuple[Recording, str]] = []
    for rec, code in rows:
        if code is not None and code in settings.retention_by_category:
            days, rule = settings.retention_by_category[code], f"category:{code}={settings.retention_by_category[code]}d"
        else:
            days, rule = settings.retention_days, f"default={settings.retention_days}d"
        if _aware(rec.created_at) + timedelta(days=days) <= now:
            out.append((rec, rule))
    return out


async def purge(session: AsyncSession, settings: RecordingSettings, root: Path,
                now: datetime | None = None, dry_run: bool = False, actor: str = "system") -> list[Purged]:
    """Remove expired recordings (file + transcript), logging each; ``dry_run`` only lists them."""
    now = now or datetime.now(UTC)
    done: list[Purged] = []
    for rec, rule in await expired(session, settings, now):
        full = root / rec.path
        removed = False
        if not dry_run:
            if full.is_file():
                full.unlink()
                removed = True
            await session.execute(delete(TranscriptSegment).where(TranscriptSegment.recording_id == rec.id))
            rec.purged_at = now
            session.add(AuditLog(actor=actor, action="recording_purged", target=f"recording:{rec.id}",
                                 data={"path": rec.path, "sha256": rec.sha256, "rule": rule,
                                       "recorded_at": _aware(rec.created_at).isoformat(),
                                       "file_removed": removed, "contact_id": rec.contact_id}))
            log.info("purged recording %s (%s, %s)", rec.id, rec.path, rule)
        done.append(Purged(rec.id, rec.path, rec.sha256, rule, _aware(rec.created_at), removed))
    await session.flush()
    return done
