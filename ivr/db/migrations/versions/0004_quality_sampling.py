"""Quality: contacts sampled per agent for review, and reviewers' evaluations (calibration, acknowledgement)

Revision ID: 0004_quality_sampling
Revises: 0001_base
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_quality_sampling'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('qa_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('scorecard', sa.String(length=40), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('drawn_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('drawn_by', sa.String(length=80), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_qa_samples_agent_id_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_qa_samples_contact_id_contacts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_samples')),
    sa.UniqueConstraint('contact_id', 'scorecard', name=op.f('uq_qa_samples_contact_id'))
    )
    op.create_index(op.f('ix_qa_samples_agent_id'), 'qa_samples', ['agent_id'], unique=False)
    op.create_index(op.f('ix_qa_samples_contact_id'), 'qa_samples', ['contact_id'], unique=False)
    op.create_table('qa_evaluations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('reviewer', sa.String(length=80), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('total', sa.Float(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('agent_comment', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['sample_id'], ['qa_samples.id'], name=op.f('fk_qa_evaluations_sample_id_qa_samples'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_evaluations')),
    sa.UniqueConstraint('sample_id', 'reviewer', name=op.f('uq_qa_evaluations_sample_id'))
    )
    op.create_index(op.f('ix_qa_evaluations_sample_id'), 'qa_evaluations', ['sample_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_qa_evaluations_sample_id'), table_name='qa_evaluations')
    op.drop_table('qa_evaluations')
    op.drop_index(op.f('ix_qa_samples_contact_id'), table_name='qa_samples')
    op.drop_index(op.f('ix_qa_samples_agent_id'), table_name='qa_samples')
    op.drop_table('qa_samples')
