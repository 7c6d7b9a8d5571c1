"""Knowledge base: an index on usage, so a search walks the most used articles first and stops after its page

Revision ID: 0005_kb_usage_index
Revises: 0004_knowledge_base
"""
from alembic import op


revision = '0005_kb_usage_index'
down_revision = '0004_knowledge_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_kb_articles_usage', 'kb_articles', ['usage_count', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_kb_articles_usage', table_name='kb_articles')
