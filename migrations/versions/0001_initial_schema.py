"""initial schema: the whole first-cut data model of DESIGN.md

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON everywhere, JSONB on PostgreSQL (as app.db.JSONType).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('admin', 'labeler', name='role', native_enum=False, length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user')),
    sa.UniqueConstraint('username', name=op.f('uq_user_username'))
    )
    op.create_table('api_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.Enum('read', 'label', 'admin', name='scope', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_api_token_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_token_token_hash'))
    )
    op.create_index(op.f('ix_api_token_user_id'), 'api_token', ['user_id'], unique=False)
    op.create_table('project',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('labels_per_task', sa.Integer(), nullable=False),
    sa.Column('allow_ties', sa.Boolean(), nullable=False),
    sa.Column('rating_schema', JSON, nullable=False),
    sa.Column('guidelines', sa.Text(), nullable=False),
    sa.Column('sampling_params', JSON, nullable=False),
    sa.Column('near_duplicate_prefix', sa.Integer(), nullable=True),
    sa.Column('current_policy_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('k BETWEEN 2 AND 9', name=op.f('ck_project_k_range')),
    sa.CheckConstraint('labels_per_task BETWEEN 1 AND 20', name=op.f('ck_project_labels_per_task_range')),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_project_created_by_id_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project')),
    sa.UniqueConstraint('name', name=op.f('uq_project_name'))
    )
    op.create_table('dataset_snapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=False),
    sa.Column('filters', JSON, nullable=False),
    sa.Column('counts', JSON, nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_dataset_snapshot_created_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_dataset_snapshot_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_snapshot'))
    )
    op.create_index(op.f('ix_dataset_snapshot_project_id'), 'dataset_snapshot', ['project_id'], unique=False)
    op.create_table('job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('sample', 'train_reward', 'train_dpo', 'score', name='jobkind', native_enum=False, length=16), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('state', sa.Enum('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead', name='jobstate', native_enum=False, length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('run_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', JSON, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_job_created_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_job_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_job_dedupe_key'))
    )
    op.create_index(op.f('ix_job_project_id'), 'job', ['project_id'], unique=False)
    op.create_index('ix_job_state_run_after', 'job', ['state', 'run_after'], unique=False)
    op.create_table('project_member',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_project_member_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_project_member_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'user_id', name=op.f('pk_project_member'))
    )
    op.create_index(op.f('ix_project_member_user_id'), 'project_member', ['user_id'], unique=False)
    op.create_table('prompt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=True),
    sa.Column('kind', sa.Enum('text', 'chat', name='promptkind', native_enum=False, length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('messages', JSON, nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('source_user', sa.String(length=200), nullable=True),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('meta', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_prompt_created_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_prompt_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt')),
    sa.UniqueConstraint('project_id', 'content_hash', name=op.f('uq_prompt_project_id_content_hash')),
    sa.UniqueConstraint('project_id', 'external_id', name=op.f('uq_prompt_project_id_external_id'))
    )
    op.create_index(op.f('ix_prompt_source_user'), 'prompt', ['source_user'], unique=False)
    op.create_table('job_metric',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_job_metric_job_id_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_metric')),
    sa.UniqueConstraint('job_id', 'name', 'step', name=op.f('uq_job_metric_job_id_name_step'))
    )
    op.create_table('model_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('role', sa.Enum('policy', 'reward', 'dpo', name='modelrole', native_enum=False, length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('created_by_job_id', sa.Integer(), nullable=True),
    sa.Column('config', JSON, nullable=False),
    sa.Column('metrics', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_job_id'], ['job.id'], name=op.f('fk_model_version_created_by_job_id_job'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['parent_id'], ['model_version.id'], name=op.f('fk_model_version_parent_id_model_version'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_version')),
    sa.UniqueConstraint('created_by_job_id', name=op.f('uq_model_version_created_by_job_id'))
    )
    # project.current_policy_id closes a cycle (project -> model_version -> job -> project),
    # so its foreign key is added once model_version exists; batch mode lets SQLite do it.
    with op.batch_alter_table('project') as batch_op:
        batch_op.create_foreign_key(
            op.f('fk_project_current_policy_id_model_version'), 'model_version',
            ['current_policy_id'], ['id'], ondelete='SET NULL',
        )

    op.create_table('task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('open', 'complete', 'retired', name='taskstate', native_enum=False, length=16), nullable=False),
    sa.Column('labels_needed', sa.Integer(), nullable=False),
    sa.Column('labels_done', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_task_project_id_project'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompt.id'], name=op.f('fk_task_prompt_id_prompt'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task'))
    )
    op.create_index('ix_task_project_id_state', 'task', ['project_id', 'state'], unique=False)
    op.create_index(op.f('ix_task_prompt_id'), 'task', ['prompt_id'], unique=False)
    op.create_table('assignment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('leased', 'submitted', 'skipped', 'expired', name='assignmentstate', native_enum=False, length=16), nullable=False),
    sa.Column('display_order', JSON, nullable=False),
    sa.Column('leased_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_assignment_task_id_task'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_assignment_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assignment')),
    sa.UniqueConstraint('task_id', 'user_id', name=op.f('uq_assignment_task_id_user_id'))
    )
    op.create_index(op.f('ix_assignment_user_id'), 'assignment', ['user_id'], unique=False)
    op.create_table('completion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('text_hash', sa.String(length=64), nullable=False),
    sa.Column('token_count', sa.Integer(), nullable=False),
    sa.Column('finish_reason', sa.Enum('stop', 'length', name='finishreason', native_enum=False, length=16), nullable=False),
    sa.Column('sampling_params', JSON, nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_version.id'], name=op.f('fk_completion_model_version_id_model_version')),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompt.id'], name=op.f('fk_completion_prompt_id_prompt'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_completion'))
    )
    op.create_index(op.f('ix_completion_model_version_id'), 'completion', ['model_version_id'], unique=False)
    op.create_index(op.f('ix_completion_prompt_id'), 'completion', ['prompt_id'], unique=False)
    op.create_table('judgment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('assignment_id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=100), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('rationale', sa.Text(), nullable=False),
    sa.Column('none_acceptable', sa.Boolean(), nullable=False),
    sa.Column('prompt_flags', JSON, nullable=False),
    sa.Column('demonstration', sa.Text(), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('excluded', sa.Boolean(), nullable=False),
    sa.Column('excluded_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assignment_id'], ['assignment.id'], name=op.f('fk_judgment_assignment_id_assignment'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_judgment_task_id_task'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_judgment_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_judgment')),
    sa.UniqueConstraint('assignment_id', name=op.f('uq_judgment_assignment_id')),
    sa.UniqueConstraint('task_id', 'user_id', name=op.f('uq_judgment_task_id_user_id')),
    sa.UniqueConstraint('user_id', 'idempotency_key', name=op.f('uq_judgment_user_id_idempotency_key'))
    )
    op.create_table('task_completion',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('completion_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['completion_id'], ['completion.id'], name=op.f('fk_task_completion_completion_id_completion'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_task_completion_task_id_task'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'completion_id', name=op.f('pk_task_completion')),
    sa.UniqueConstraint('task_id', 'position', name=op.f('uq_task_completion_task_id_position'))
    )
    op.create_index(op.f('ix_task_completion_completion_id'), 'task_completion', ['completion_id'], unique=False)
    op.create_table('comparison',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('judgment_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('chosen_id', sa.Integer(), nullable=False),
    sa.Column('rejected_id', sa.Integer(), nullable=False),
    sa.Column('margin', sa.Integer(), nullable=False),
    sa.Column('is_tie', sa.Boolean(), nullable=False),
    sa.CheckConstraint('chosen_id <> rejected_id', name=op.f('ck_comparison_distinct_sides')),
    sa.CheckConstraint('margin >= 0', name=op.f('ck_comparison_margin_non_negative')),
    sa.ForeignKeyConstraint(['chosen_id'], ['completion.id'], name=op.f('fk_comparison_chosen_id_completion'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['judgment_id'], ['judgment.id'], name=op.f('fk_comparison_judgment_id_judgment'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rejected_id'], ['completion.id'], name=op.f('fk_comparison_rejected_id_completion'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_comparison_task_id_task'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comparison')),
    sa.UniqueConstraint('judgment_id', 'chosen_id', 'rejected_id', name=op.f('uq_comparison_judgment_id_chosen_id_rejected_id'))
    )
    op.create_index(op.f('ix_comparison_task_id'), 'comparison', ['task_id'], unique=False)
    op.create_table('completion_rating',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('judgment_id', sa.Integer(), nullable=False),
    sa.Column('completion_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('likert', sa.Integer(), nullable=True),
    sa.Column('flags', JSON, nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.CheckConstraint('rank >= 1', name=op.f('ck_completion_rating_rank_positive')),
    sa.ForeignKeyConstraint(['completion_id'], ['completion.id'], name=op.f('fk_completion_rating_completion_id_completion'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['judgment_id'], ['judgment.id'], name=op.f('fk_completion_rating_judgment_id_judgment'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_completion_rating')),
    sa.UniqueConstraint('judgment_id', 'completion_id', name=op.f('uq_completion_rating_judgment_id_completion_id'))
    )
    op.create_index(op.f('ix_completion_rating_completion_id'), 'completion_rating', ['completion_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('project') as batch_op:
        batch_op.drop_constraint(op.f('fk_project_current_policy_id_model_version'), type_='foreignkey')
    op.drop_index(op.f('ix_completion_rating_completion_id'), table_name='completion_rating')
    op.drop_table('completion_rating')
    op.drop_index(op.f('ix_comparison_task_id'), table_name='comparison')
    op.drop_table('comparison')
    op.drop_index(op.f('ix_task_completion_completion_id'), table_name='task_completion')
    op.drop_table('task_completion')
    op.drop_table('judgment')
    op.drop_index(op.f('ix_completion_prompt_id'), table_name='completion')
    op.drop_index(op.f('ix_completion_model_version_id'), table_name='completion')
    op.drop_table('completion')
    op.drop_index(op.f('ix_assignment_user_id'), table_name='assignment')
    op.drop_table('assignment')
    op.drop_index(op.f('ix_task_prompt_id'), table_name='task')
    op.drop_index('ix_task_project_id_state', table_name='task')
    op.drop_table('task')
    op.drop_table('model_version')
    op.drop_table('job_metric')
    op.drop_index(op.f('ix_prompt_source_user'), table_name='prompt')
    op.drop_table('prompt')
    op.drop_index(op.f('ix_project_member_user_id'), table_name='project_member')
    op.drop_table('project_member')
    op.drop_index('ix_job_state_run_after', table_name='job')
    op.drop_index(op.f('ix_job_project_id'), table_name='job')
    op.drop_table('job')
    op.drop_index(op.f('ix_dataset_snapshot_project_id'), table_name='dataset_snapshot')
    op.drop_table('dataset_snapshot')
    op.drop_table('project')
    op.drop_index(op.f('ix_api_token_user_id'), table_name='api_token')
    op.drop_table('api_token')
    op.drop_table('user')
