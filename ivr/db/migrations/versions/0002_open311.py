"""Open311 service requests

Revision ID: 0002_open311
Revises: 0001_base
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_open311'
down_revision = '0001_base'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('open311_api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.String(length=80), nullable=False),
    sa.Column('agency', sa.String(length=200), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open311_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_open311_api_keys_key_hash')),
    sa.UniqueConstraint('name', name=op.f('uq_open311_api_keys_name'))
    )
    op.create_table('open311_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service_request_id', sa.String(length=20), nullable=False),
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('service_code', sa.String(length=80), nullable=False),
    sa.Column('service_name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('status_notes', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('agency_responsible', sa.String(length=200), nullable=True),
    sa.Column('service_notice', sa.Text(), nullable=True),
    sa.Column('requested_datetime', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_datetime', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expected_datetime', sa.DateTime(timezone=True), nullable=True),
    sa.Column('address', sa.String(length=500), nullable=True),
    sa.Column('address_id', sa.String(length=120), nullable=True),
    sa.Column('zipcode', sa.String(length=20), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('long', sa.Float(), nullable=True),
    sa.Column('media_url', sa.String(length=1000), nullable=True),
    sa.Column('media_key', sa.String(length=40), nullable=True),
    sa.Column('media_path', sa.String(length=500), nullable=True),
    sa.Column('media_content_type', sa.String(length=100), nullable=True),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('source_ref', sa.String(length=120), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('citizen_id', sa.Integer(), nullable=True),
    sa.Column('api_key_id', sa.Integer(), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('phone', sa.String(length=40), nullable=True),
    sa.Column('email', sa.String(length=200), nullable=True),
    sa.Column('first_name', sa.String(length=120), nullable=True),
    sa.Column('last_name', sa.String(length=120), nullable=True),
    sa.Column('device_id', sa.String(length=200), nullable=True),
    sa.Column('account_id', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['api_key_id'], ['open311_api_keys.id'], name=op.f('fk_open311_requests_api_key_id_open311_api_keys'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizens.id'], name=op.f('fk_open311_requests_citizen_id_citizens'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_open311_requests_contact_id_contacts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open311_requests')),
    sa.UniqueConstraint('media_key', name=op.f('uq_open311_requests_media_key')),
    sa.UniqueConstraint('service_request_id', name=op.f('uq_open311_requests_service_request_id')),
    sa.UniqueConstraint('source_ref', name=op.f('uq_open311_requests_source_ref')),
    sa.UniqueConstraint('token', name=op.f('uq_open311_requests_token'))
    )
    with op.batch_alter_table('open311_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_open311_requests_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index('ix_open311_requests_code_requested', ['service_code', 'requested_datetime'], unique=False)
        batch_op.create_index(batch_op.f('ix_open311_requests_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index('ix_open311_requests_requested', ['requested_datetime'], unique=False)

    op.create_table('open311_request_updates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('status_notes', sa.Text(), nullable=True),
    sa.Column('agency_responsible', sa.String(length=200), nullable=True),
    sa.Column('expected_datetime', sa.DateTime(timezone=True), nullable=True),
    sa.Column('by', sa.String(length=120), nullable=False),
    sa.Column('sms_to', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['open311_requests.id'], name=op.f('fk_open311_request_updates_request_id_open311_requests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open311_request_updates'))
    )
    with op.batch_alter_table('open311_request_updates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_open311_request_updates_request_id'), ['request_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('open311_request_updates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_open311_request_updates_request_id'))

    op.drop_table('open311_request_updates')
    with op.batch_alter_table('open311_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_open311_requests_requested')
        batch_op.drop_index(batch_op.f('ix_open311_requests_contact_id'))
        batch_op.drop_index('ix_open311_requests_code_requested')
        batch_op.drop_index(batch_op.f('ix_open311_requests_citizen_id'))

    op.drop_table('open311_requests')
    op.drop_table('open311_api_keys')
