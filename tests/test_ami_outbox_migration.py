"""Migration 0005_ami_outbox: jobs still waiting under the old scheme (a ``recording_finished``
timeline row without ``data.enqueued``) move to ``ami_outbox``, so an upgrade loses none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from ivr.db.migrations import downgrade, upgrade

EVENTS = sa.table("contact_events", sa.column("contact_id", sa.Integer()), sa.column("kind", sa.String()),
                  sa.column("source", sa.String()), sa.column("external_id", sa.String()),
                  sa.column("data", sa.JSON()), sa.column("at", sa.DateTime(timezone=True)))


def test_waiting_jobs_move_to_the_outbox_and_sent_ones_do_not(tmp_path: Path) -> None:
    path = tmp_path / "dasan.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    downgrade(f"sqlite+aiosqlite:///{path}", "0005_ami_outbox@-1")
    engine = sa.create_engine(f"sqlite:///{path}")
    now = datetime.now(UTC)
    job = {"path": "recordings/2026/12/07/9.1.stereo.sln", "call_id": "9.1", "contact_id": 1}
    with engine.begin() as c:
        assert "ami_outbox" not in sa.inspect(c).get_table_names()
        c.execute(sa.insert(EVENTS), [
            {"contact_id": 1, "kind": "recording_finished", "source": "ami", "external_id": "ami:recording_finished:9.1",
             "data": job, "at": now},
            {"contact_id": 1, "kind": "recording_finished", "source": "ami", "external_id": "ami:recording_finished:9.2",
             "data": {**job, "call_id": "9.2", "enqueued": True}, "at": now},
            {"contact_id": 1, "kind": "recording_finished", "source": "ami", "external_id": "ami:recording_finished:9.3",
             "data": {**job, "call_id": "9.3"}, "at": now - timedelta(days=30)},  # older than the bridge looked
            {"contact_id": 1, "kind": "hangup", "source": "ami", "external_id": "ami:Hangup:9.1", "data": {}, "at": now},
        ])
    upgrade(f"sqlite+aiosqlite:///{path}")
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT key, stream, job FROM ami_outbox ORDER BY id")).all()
    engine.dispose()
    assert [(key, stream) for key, stream, _ in rows] == [("ami:recording_finished:9.1", "recordings.finished")]
    assert '"call_id": "9.1"' in rows[0][2]
