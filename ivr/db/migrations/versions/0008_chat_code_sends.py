"""chat_code_sends: every chat verification code texted, so the hourly limit per number counts
codes (a chat asking again was not counted: SMS pumping)

Revision ID: 0008_chat_code_sends
Revises: 0002_messaging
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_chat_code_sends'
down_revision = '0002_messaging'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chat_code_sends',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('phone', sa.String(length=40), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['chat_conversations.id'], name=op.f('fk_chat_code_sends_conversation_id_chat_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_code_sends'))
    )
    op.create_index('ix_chat_code_sends_phone_sent', 'chat_code_sends', ['phone', 'sent_at'], unique=False)
    op.create_index(op.f('ix_chat_code_sends_sent_at'), 'chat_code_sends', ['sent_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_chat_code_sends_sent_at'), table_name='chat_code_sends')
    op.drop_index('ix_chat_code_sends_phone_sent', table_name='chat_code_sends')
    op.drop_table('chat_code_sends')
