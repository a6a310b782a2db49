"""dataset snapshot bytes: dataset_snapshot_chunk, and the file type, size and chunk count of a snapshot

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dataset_snapshot_chunk',
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('raw_size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['snapshot_id'], ['dataset_snapshot.id'], name=op.f('fk_dataset_snapshot_chunk_snapshot_id_dataset_snapshot'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('snapshot_id', 'seq', name=op.f('pk_dataset_snapshot_chunk'))
    )
    # Server defaults only fill rows that already exist; the models set the values from then on.
    with op.batch_alter_table('dataset_snapshot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file', sa.String(length=16), nullable=False, server_default='jsonl'))
        batch_op.add_column(sa.Column('size_bytes', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('chunk_count', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('dataset_snapshot', schema=None) as batch_op:
        batch_op.drop_column('chunk_count')
        batch_op.drop_column('size_bytes')
        batch_op.drop_column('file')

    op.drop_table('dataset_snapshot_chunk')
