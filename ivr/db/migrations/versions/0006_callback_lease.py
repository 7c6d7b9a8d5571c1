"""callback_requests.dialing_by / dialing_until: which dasan node dials a callback, until when

A dialling node renews its lease while it waits for the attempt's result; a node that died
stops renewing it, and a survivor takes the callback over once the lease has run out.

Revision ID: 0006_callback_lease
Revises: 0001_base
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_callback_lease'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('callback_requests', sa.Column('dialing_by', sa.String(length=120), nullable=True))
    op.add_column('callback_requests', sa.Column('dialing_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('callback_requests') as batch:
        batch.drop_column('dialing_until')
        batch.drop_column('dialing_by')
