"""contacts.ivr_fallback: the dialplan's fallback queued the caller (IVR down or undecided)

Revision ID: 0003_contacts_ivr_fallback
Revises: 0001_base
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_contacts_ivr_fallback'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite has it): a batch would rebuild contacts on SQLite and drop the
    # triggers that keep the notes in search_index (0001_base), so notes were no longer found.
    op.add_column('contacts', sa.Column('ivr_fallback', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('contacts') as batch:
        batch.drop_column('ivr_fallback')
