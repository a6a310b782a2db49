"""training: completion_score, the snapshot a model version was trained on, a job's ETA

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('completion_score',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('completion_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['completion_id'], ['completion.id'], name=op.f('fk_completion_score_completion_id_completion'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_completion_score_job_id_job'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_version.id'], name=op.f('fk_completion_score_model_version_id_model_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_completion_score')),
    sa.UniqueConstraint('completion_id', 'model_version_id', name=op.f('uq_completion_score_completion_id_model_version_id'))
    )
    op.create_index(op.f('ix_completion_score_model_version_id'), 'completion_score', ['model_version_id'], unique=False)
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('eta_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dataset_snapshot_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_model_version_dataset_snapshot_id'), ['dataset_snapshot_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_model_version_dataset_snapshot_id_dataset_snapshot'),
                                    'dataset_snapshot', ['dataset_snapshot_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_model_version_dataset_snapshot_id_dataset_snapshot'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_model_version_dataset_snapshot_id'))
        batch_op.drop_column('dataset_snapshot_id')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('eta_at')
    op.drop_index(op.f('ix_completion_score_model_version_id'), table_name='completion_score')
    op.drop_table('completion_score')
