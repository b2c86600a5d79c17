"""key change log: key and account changes numbered in commit order, for the workers' key caches

Replaces polling the newest audit event id, which missed changes committed out of id order on
PostgreSQL and made every audit event (even a failed login) empty every cache.

Revision ID: 9c4e1f7b2d53
Revises: 7a3d9e2c41f8
Create Date: 2026-11-23 03:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '9c4e1f7b2d53'
down_revision = '7a3d9e2c41f8'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table('key_changes',
    sa.Column('seq', BIGINT, autoincrement=False, nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_key_changes'))
    )
    counter = op.create_table('key_change_counter',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('value', BIGINT, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_key_change_counter'))
    )
    op.bulk_insert(counter, [{'id': 1, 'value': 0}])


def downgrade():
    op.drop_table('key_change_counter')
    op.drop_table('key_changes')
