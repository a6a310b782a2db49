"""The SQL that exports share: which judgments, which completions, read in batches."""

from collections.abc import Iterator

from sqlalchemy import ColumnElement, Integer, Select, any_, bindparam, exists, func, literal_column, select, type_coerce
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased

from app.export.schemas import ExportOptions
from app.labeling.models import CompletionRating, Judgment, Task, TaskCompletion
from app.projects.models import Project
from app.prompts.models import Completion

BATCH = 10_000


def stream(session: Session, stmt: Select) -> Iterator[list]:
    """The statement's rows in batches, never all at once (a named cursor on PostgreSQL).
    Core execution: the rows are plain tuples, without the ORM's per-row work."""
    result = session.connection().execute(stmt, execution_options={"yield_per": BATCH})
    try:
        yield from result.partitions()
    finally:
        result.close()


def id_in(column: ColumnElement[int], ids: list[int], dialect: str) -> ColumnElement[bool]:
    """column IN ids; on PostgreSQL one array parameter instead of thousands of bound values."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", ids, type_=postgresql.ARRAY(Integer)))
    return column.in_(ids)


def judgment_filters(project: Project, options: ExportOptions) -> list[ColumnElement[bool]]:
    """The judgments an export draws on: this project's, not excluded, in the date range."""
    where = [Task.project_id == project.id]
    if not options.include_excluded:
        where.append(Judgment.excluded.is_(False))
    if options.since is not None:
        where.append(Judgment.created_at >= options.since)
    if options.until is not None:
        where.append(Judgment.created_at < options.until)
    return where


def _flags_overlap(session: Session, keys: list[str]) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(CompletionRating.flags, postgresql.JSONB).has_any(postgresql.array(keys))
    each = func.json_each(CompletionRating.flags).table_valued("value")
    return exists(select(literal_column("1")).select_from(each).where(each.c.value.in_(keys)))


def flagged_completions(session: Session, project: Project, options: ExportOptions) -> Select:
    """Completions that a judgment of this export flagged with one of `exclude_flags`."""
    return (select(CompletionRating.completion_id).join(Judgment, Judgment.id == CompletionRating.judgment_id)
            .join(Task, Task.id == Judgment.task_id)
            .where(*judgment_filters(project, options), _flags_overlap(session, options.exclude_flags)))


def version_completions(options: ExportOptions) -> Select:
    return select(Completion.id).where(Completion.model_version_id == options.model_version_id)


def sampled_only_from_version(options: ExportOptions) -> ColumnElement[bool]:
    """The judgment's task has no completion from another model version."""
    other = aliased(TaskCompletion)
    return ~exists().where(other.task_id == Judgment.task_id, Completion.id == other.completion_id,
                           Completion.model_version_id != options.model_version_id)


def flagged_in_tasks(session: Session, project: Project, options: ExportOptions, task_ids: list[int]) -> set[int]:
    """The flagged completions (see flagged_completions) among these tasks'."""
    return set(session.scalars(flagged_completions(session, project, options).where(Task.id.in_(task_ids))))
