"""Days people read are the site's (``timezone:``), not UTC's: at 08:50 KST on 7 December UTC
still says 6 December. Tracking numbers and recording folders (docs/contracts.md) use the site's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr import records, sitetime
from ivr.ami.ingest import Ingester
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Contact
from ivr.recordings.store import import_file, layout_path

MORNING = datetime(2026, 12, 6, 23, 50, tzinfo=UTC)  # 08:50 on 7 December in Seoul


@pytest.fixture
def site_zone() -> Iterator[None]:
    before = sitetime.zone().key
    yield
    sitetime.use(before)


async def test_tracking_numbers_of_a_morning_call_carry_the_sites_day(db: Database, site_zone: None) -> None:
    assert records.new_tracking_number(MORNING).startswith("261207")
    assert {n[:6] for n in records.tracking_numbers(5, MORNING)} == {"261207"}
    async with db.transaction() as session:
        conn = await session.connection()
        found = await records.ensure_call_contacts(conn, [records.NewCall("1796000000.1", "01012345678")], MORNING)
        number = await session.scalar(select(Contact.tracking_number).where(Contact.id == found["1796000000.1"][0]))
    assert number is not None and number.startswith("261207") and len(number) == 12
    sitetime.use("UTC")  # a site that keeps UTC gets UTC's day
    assert records.new_tracking_number(MORNING).startswith("261206")


async def test_the_configured_zone_is_the_processes_zone(sqlite_url: str, site_zone: None) -> None:
    settings = Settings()
    settings.database.url = sqlite_url
    settings.timezone = "America/New_York"  # 18:50 on 6 December there
    ctx = await AppContext.create(settings, migrate=False)
    try:
        assert records.new_tracking_number(MORNING).startswith("261206")
        assert layout_path("1796000000.1", datetime(2026, 12, 7, 3, 0, tzinfo=UTC)).startswith("2026/12/06/")
    finally:
        await ctx.close()


def test_recordings_are_filed_under_the_sites_day(tmp_path: Path, site_zone: None) -> None:
    assert layout_path("1796000000.1", MORNING) == "2026/12/07/1796000000.1.wav"
    source = tmp_path / "call.wav"
    source.write_bytes(b"RIFF")
    stored = import_file(tmp_path / "store", source, call_id="1796000000.1", started=MORNING)
    assert stored == tmp_path / "store" / "2026" / "12" / "07" / "1796000000.1.wav"


async def test_a_recording_the_bridge_did_not_hear_named_is_looked_for_under_the_sites_day(
        db: Database, tmp_path: Path, site_zone: None) -> None:
    """MixMonitor started, no MIXMONITOR_FILENAME seen: the job names the contract's path."""
    call = "1796000000.7"
    channel = {"Channel": "PJSIP/caller-00000001", "Uniqueid": call, "Linkedid": call, "CallerIDNum": "01012345678"}
    ingester = Ingester(tmp_path / "recordings")
    async with db.transaction() as session:
        effects = await ingester.apply(session, [
            {"Event": "MixMonitorStart", **channel, "Context": "dasan-queue", "Exten": "s", "Priority": "9"},
            {"Event": "Hangup", **channel, "Cause": "16", "Cause-txt": "Normal Clearing"},
        ], MORNING)
    [(_stream, job, _id)] = effects.enqueue
    # the dialplan's two-channel recording: <linkedid>.stereo.sln (docs/contracts.md)
    assert job["path"] == str(tmp_path / "recordings" / "2026" / "12" / "07" / f"{call}.stereo.sln")
