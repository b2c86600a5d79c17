"""usage by model: key_usage rows per LLM model (the gateway's), with input and output tokens

Revision ID: b7d2e4f6a8c1
Revises: 17e8f964ca82
Create Date: 2026-11-23 12:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b7d2e4f6a8c1'
down_revision = '17e8f964ca82'
branch_labels = None
depends_on = None

TOKENS = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('key_usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model', sa.String(length=200), server_default='', nullable=False))
        batch_op.add_column(sa.Column('input_tokens', TOKENS, server_default='0', nullable=False))
        batch_op.add_column(sa.Column('output_tokens', TOKENS, server_default='0', nullable=False))
        batch_op.drop_constraint('pk_key_usage', type_='primary')
        batch_op.create_primary_key('pk_key_usage', ['key_id', 'hour', 'outcome', 'model'])


def downgrade():
    # The rows of one key, hour and outcome for several models are added into one row again.
    op.execute("INSERT INTO key_usage (key_id, hour, outcome, model, count, cost, input_tokens, output_tokens) "
               "SELECT key_id, hour, outcome, '', 0, 0, 0, 0 FROM key_usage WHERE model <> '' "
               "GROUP BY key_id, hour, outcome ON CONFLICT DO NOTHING")
    sums = {column: f"(SELECT sum(m.{column}) FROM key_usage m WHERE m.key_id = key_usage.key_id "
                    "AND m.hour = key_usage.hour AND m.outcome = key_usage.outcome)" for column in ('count', 'cost')}
    op.execute(f"UPDATE key_usage SET count = {sums['count']}, cost = {sums['cost']} WHERE model = ''")
    op.execute("DELETE FROM key_usage WHERE model <> ''")
    with op.batch_alter_table('key_usage', schema=None) as batch_op:
        batch_op.drop_constraint('pk_key_usage', type_='primary')
        batch_op.create_primary_key('pk_key_usage', ['key_id', 'hour', 'outcome'])
        batch_op.drop_column('output_tokens')
        batch_op.drop_column('input_tokens')
        batch_op.drop_column('model')
