"""review: gold tasks (task.gold_ranks, project.gold_rate) and labeler exclusions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON everywhere, JSONB on PostgreSQL (as app.db.JSONType).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('labeler_exclusion',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('excluded_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['excluded_by_id'], ['user.id'], name=op.f('fk_labeler_exclusion_excluded_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_labeler_exclusion_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_labeler_exclusion_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'user_id', name=op.f('pk_labeler_exclusion'))
    )
    with op.batch_alter_table('labeler_exclusion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labeler_exclusion_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('judgment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('excluded_with_labeler', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gold_rate', sa.Double(), server_default='0', nullable=False))
        batch_op.create_check_constraint(op.f('ck_project_gold_rate_range'), 'gold_rate >= 0 AND gold_rate <= 1')

    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gold_ranks', JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('gold_ranks')

    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_project_gold_rate_range'), type_='check')
        batch_op.drop_column('gold_rate')

    with op.batch_alter_table('judgment', schema=None) as batch_op:
        batch_op.drop_column('excluded_with_labeler')

    with op.batch_alter_table('labeler_exclusion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labeler_exclusion_user_id'))

    op.drop_table('labeler_exclusion')
