"""the labeling queue's index: open tasks of a project in lease order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Replaces (project_id, state), its prefix: leasing no longer sorts every open task.
    op.create_index('ix_task_queue', 'task', ['project_id', 'state', sa.text('labels_done DESC'), 'id'], unique=False)
    op.drop_index('ix_task_project_id_state', table_name='task')


def downgrade() -> None:
    op.create_index('ix_task_project_id_state', 'task', ['project_id', 'state'], unique=False)
    op.drop_index('ix_task_queue', table_name='task')
