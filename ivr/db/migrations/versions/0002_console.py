"""Web console: quality reviews and configuration change history

Revision ID: 0002_console
Revises: 0001_base
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_console'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_quality_reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('recording_id', sa.Integer(), nullable=True),
    sa.Column('reviewer', sa.String(length=80), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_console_quality_reviews_contact_id_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_console_quality_reviews_recording_id_recordings'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_quality_reviews'))
    )
    op.create_index(op.f('ix_console_quality_reviews_contact_id'), 'console_quality_reviews', ['contact_id'], unique=False)
    op.create_index(op.f('ix_console_quality_reviews_recording_id'), 'console_quality_reviews', ['recording_id'], unique=False)
    op.create_table('console_config_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('author', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('target', sa.String(length=300), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('diff', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('apply_result', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_config_changes'))
    )
    op.create_index(op.f('ix_console_config_changes_at'), 'console_config_changes', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_console_config_changes_at'), table_name='console_config_changes')
    op.drop_table('console_config_changes')
    op.drop_index(op.f('ix_console_quality_reviews_recording_id'), table_name='console_quality_reviews')
    op.drop_index(op.f('ix_console_quality_reviews_contact_id'), table_name='console_quality_reviews')
    op.drop_table('console_quality_reviews')
