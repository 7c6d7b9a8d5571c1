"""AMI bridge: agent state and live queue calls

Revision ID: 0002_ami
Revises: 0001_base
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_ami'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ami_agent_states',
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('extension', sa.String(length=40), nullable=False),
    sa.Column('logged_in', sa.Boolean(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('queues', sa.JSON(), nullable=False),
    sa.Column('device_status', sa.Integer(), nullable=False),
    sa.Column('in_call', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_call_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('username', name=op.f('pk_ami_agent_states'))
    )
    op.create_table('ami_live_calls',
    sa.Column('linkedid', sa.String(length=80), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('queue', sa.String(length=80), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('agent', sa.String(length=80), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('linkedid', name=op.f('pk_ami_live_calls'))
    )


def downgrade() -> None:
    op.drop_table('ami_live_calls')
    op.drop_table('ami_agent_states')
