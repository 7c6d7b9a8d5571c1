"""Security: revocable console sessions, idle web chats, phone numbers proven by a code

Revision ID: 0003_security_sessions
Revises: 0001_base
Depends on: 0002_messaging (the chat columns)
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_security_sessions'
down_revision = '0001_base'
branch_labels = None
depends_on = '0002_messaging'


def upgrade() -> None:
    op.add_column('users', sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))
    op.add_column('chat_conversations', sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('chat_conversations', sa.Column('claimed_phone', sa.String(length=40), nullable=True))
    op.add_column('chat_conversations', sa.Column('phone_code', sa.String(length=64), nullable=True))
    op.add_column('chat_conversations', sa.Column('phone_code_expires', sa.DateTime(timezone=True), nullable=True))
    op.add_column('chat_conversations', sa.Column('phone_attempts', sa.Integer(), server_default='0', nullable=False))
    op.add_column('chat_conversations', sa.Column('phone_verified_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_chat_conversations_last_seen_at'), 'chat_conversations', ['last_seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_chat_conversations_last_seen_at'), table_name='chat_conversations')
    with op.batch_alter_table('chat_conversations') as batch:
        for column in ('phone_verified_at', 'phone_attempts', 'phone_code_expires', 'phone_code',
                       'claimed_phone', 'last_seen_at'):
            batch.drop_column(column)
    with op.batch_alter_table('users') as batch:
        batch.drop_column('session_version')
