"""ami_outbox: the AMI bridge's bus jobs in a table of their own, not flags on timeline rows

Revision ID: 0005_ami_outbox
Revises: 0001_base
"""
from datetime import datetime, timedelta, timezone

from alembic import op
import sqlalchemy as sa


revision = '0005_ami_outbox'
down_revision = '0001_base'
branch_labels = None
depends_on = None

OUTBOX_DAYS = 7  # how far back the bridge looked for jobs the bus never got


def upgrade() -> None:
    outbox = op.create_table('ami_outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('stream', sa.String(length=80), nullable=False),
    sa.Column('job', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ami_outbox')),
    sa.UniqueConstraint('key', name=op.f('uq_ami_outbox_key'))
    )
    # Jobs that were still waiting under the old scheme (recording_finished rows without
    # data.enqueued) move over, so an upgrade loses none.
    events = sa.table('contact_events', sa.column('id', sa.Integer()), sa.column('kind', sa.String()),
                      sa.column('external_id', sa.String()), sa.column('data', sa.JSON()),
                      sa.column('at', sa.DateTime(timezone=True)))
    since = datetime.now(timezone.utc) - timedelta(days=OUTBOX_DAYS)
    rows = op.get_bind().execute(sa.select(events.c.external_id, events.c.data, events.c.at).where(
        events.c.kind == 'recording_finished', events.c.at >= since).order_by(events.c.id))
    waiting = [{'key': key, 'stream': 'recordings.finished', 'created_at': at,
                'job': {k: data[k] for k in ('path', 'call_id', 'contact_id') if k in data}}
               for key, data, at in rows if key and data and not data.get('enqueued')]
    if waiting:
        op.bulk_insert(outbox, waiting)


def downgrade() -> None:
    op.drop_table('ami_outbox')
