"""webcall state: citizens' browser-call page tokens, endpoint leases, minted credentials and
recent mints per address, shared by every web process and node (were in one process's memory)

Revision ID: 0006_webcall_state
Revises: 0001_base
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_webcall_state'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webcall_spent_tokens',
    sa.Column('token_id', sa.String(length=40), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('token_id', name=op.f('pk_webcall_spent_tokens'))
    )
    op.create_index(op.f('ix_webcall_spent_tokens_expires_at'), 'webcall_spent_tokens', ['expires_at'], unique=False)
    op.create_table('webcall_leases',
    sa.Column('slot', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('leased_until', sa.Float(), nullable=False),
    sa.Column('leased_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('slot', name=op.f('pk_webcall_leases'))
    )
    op.create_index('ix_webcall_leases_kind_leased_at', 'webcall_leases', ['kind', 'leased_at'], unique=False)
    op.create_table('webcall_issued',
    sa.Column('password_sha', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('username', sa.String(length=40), nullable=False),
    sa.Column('issued_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('password_sha', name=op.f('pk_webcall_issued'))
    )
    op.create_index(op.f('ix_webcall_issued_issued_at'), 'webcall_issued', ['issued_at'], unique=False)
    op.create_table('webcall_mints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webcall_mints'))
    )
    op.create_index(op.f('ix_webcall_mints_at'), 'webcall_mints', ['at'], unique=False)
    op.create_index('ix_webcall_mints_address_at', 'webcall_mints', ['address', 'at'], unique=False)


def downgrade() -> None:
    op.drop_table('webcall_mints')
    op.drop_table('webcall_issued')
    op.drop_table('webcall_leases')
    op.drop_table('webcall_spent_tokens')
