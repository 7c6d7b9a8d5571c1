"""Knowledge base: articles (texts per language, tags, channels, validity, owner, usage) and revisions

Revision ID: 0004_knowledge_base
Revises: 0001_base
Also indexes the articles' search text like 0001_base indexes notes: SQLite FTS5 trigram
(kb_search, fed by triggers; rowid = article id), PostgreSQL a pg_trgm GIN index.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_knowledge_base'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kb_articles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('texts', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('owner', sa.String(length=80), nullable=False),
    sa.Column('search_text', sa.Text(), nullable=False),
    sa.Column('usage_count', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('source_contact_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['source_contact_id'], ['contacts.id'], name=op.f('fk_kb_articles_source_contact_id_contacts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_articles')),
    sa.UniqueConstraint('key', name=op.f('uq_kb_articles_key'))
    )
    op.create_table('kb_article_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('author', sa.String(length=80), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['kb_articles.id'], name=op.f('fk_kb_article_revisions_article_id_kb_articles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_article_revisions')),
    sa.UniqueConstraint('article_id', 'revision', name=op.f('uq_kb_article_revisions_article_id'))
    )
    op.create_index(op.f('ix_kb_article_revisions_article_id'), 'kb_article_revisions', ['article_id'], unique=False)
    for statement in SQLITE_SEARCH if op.get_bind().dialect.name == 'sqlite' else POSTGRES_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for trigger in ('ai', 'au', 'ad'):
            op.execute(f'DROP TRIGGER IF EXISTS kb_search_{trigger}')
        op.execute('DROP TABLE IF EXISTS kb_search')
    op.drop_index(op.f('ix_kb_article_revisions_article_id'), table_name='kb_article_revisions')
    op.drop_table('kb_article_revisions')
    op.drop_table('kb_articles')


SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE kb_search USING fts5(text, tokenize='trigram')",
    """CREATE TRIGGER kb_search_ai AFTER INSERT ON kb_articles BEGIN
        INSERT INTO kb_search(rowid, text) VALUES (new.id, new.search_text); END""",
    """CREATE TRIGGER kb_search_au AFTER UPDATE OF search_text ON kb_articles BEGIN
        DELETE FROM kb_search WHERE rowid = old.id;
        INSERT INTO kb_search(rowid, text) VALUES (new.id, new.search_text); END""",
    """CREATE TRIGGER kb_search_ad AFTER DELETE ON kb_articles BEGIN
        DELETE FROM kb_search WHERE rowid = old.id; END""",
]

POSTGRES_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_kb_articles_search_trgm ON kb_articles USING gin (search_text gin_trgm_ops)",
]
