"""login sessions: every login is a row, ended by logout, sign-out-everywhere or a password change

Replaces revoked_sessions (a list of ended sessions only), which could not end the sessions of a
user whose password changed. Tokens issued before this revision have no row and are refused:
upgrading signs everyone out once.

Revision ID: 7a3d9e2c41f8
Revises: 4e2d31bb90c5
Create Date: 2026-11-23 03:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '7a3d9e2c41f8'
down_revision = '4e2d31bb90c5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('login_sessions',
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid', name=op.f('pk_login_sessions'))
    )
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_sessions_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('revoked_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revoked_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_revoked_sessions_expires_at'))
    op.drop_table('revoked_sessions')


def downgrade():
    op.create_table('revoked_sessions',
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_revoked_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid', name=op.f('pk_revoked_sessions'))
    )
    with op.batch_alter_table('revoked_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_revoked_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_revoked_sessions_user_id'), ['user_id'], unique=False)
    # Ended sessions stay ended; live ones keep working, as they did before this revision.
    op.execute("INSERT INTO revoked_sessions (sid, user_id, revoked_at, expires_at) "
               "SELECT sid, user_id, ended_at, expires_at FROM login_sessions WHERE ended_at IS NOT NULL")

    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_login_sessions_expires_at'))
    op.drop_table('login_sessions')
