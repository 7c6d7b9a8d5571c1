"""Messaging sidecar: web chat conversations and SNS reply deadlines

Revision ID: 0002_messaging
Revises: 0001_base
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_messaging'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chat_conversations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('citizen_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('agent_username', sa.String(length=80), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizens.id'], name=op.f('fk_chat_conversations_citizen_id_citizens'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_chat_conversations_contact_id_contacts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_conversations')),
    sa.UniqueConstraint('token', name=op.f('uq_chat_conversations_token'))
    )
    op.create_index('ix_chat_conversations_status_queued', 'chat_conversations', ['status', 'queued_at'], unique=False)
    op.create_index(op.f('ix_chat_conversations_agent_username'), 'chat_conversations', ['agent_username'], unique=False)
    op.create_index(op.f('ix_chat_conversations_contact_id'), 'chat_conversations', ['contact_id'], unique=False)
    op.create_table('sns_deadlines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('network', sa.String(length=40), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('replied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reply_message_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_sns_deadlines_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_sns_deadlines_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reply_message_id'], ['messages.id'], name=op.f('fk_sns_deadlines_reply_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sns_deadlines')),
    sa.UniqueConstraint('message_id', name=op.f('uq_sns_deadlines_message_id'))
    )
    op.create_index(op.f('ix_sns_deadlines_contact_id'), 'sns_deadlines', ['contact_id'], unique=False)
    op.create_index(op.f('ix_sns_deadlines_due_at'), 'sns_deadlines', ['due_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_sns_deadlines_due_at'), table_name='sns_deadlines')
    op.drop_index(op.f('ix_sns_deadlines_contact_id'), table_name='sns_deadlines')
    op.drop_table('sns_deadlines')
    op.drop_index(op.f('ix_chat_conversations_contact_id'), table_name='chat_conversations')
    op.drop_index(op.f('ix_chat_conversations_agent_username'), table_name='chat_conversations')
    op.drop_index('ix_chat_conversations_status_queued', table_name='chat_conversations')
    op.drop_table('chat_conversations')
