"""recordings.transcription_status indexed: /metrics counts the transcription backlog (every
status but done) at each scrape without reading a year of recordings

Revision ID: 0007_recordings_status_index
Revises: 0001_base
"""
from alembic import op


revision = '0007_recordings_status_index'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_recordings_transcription_status', 'recordings', ['transcription_status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_recordings_transcription_status', table_name='recordings')
