"""Keeping labelers supplied with tasks, and reading tasks with their completions."""

import hashlib
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from app.errors import Invalid
from app.jobs import service as jobs
from app.jobs.models import Job, JobKind
from app.labeling.models import (
    Assignment, AssignmentState, Comparison, CompletionRating, Judgment, Task, TaskCompletion, TaskState,
)
from app.projects.models import Project
from app.prompts.models import Completion, Prompt

SAMPLE_BATCH = 8  # prompts per sampling job: one batched forward of 8 prompts x K samples


def _digest(prompt_ids: list[int]) -> str:
    # The same prompts from the same policy are one piece of work, however many there are.
    return hashlib.sha256(",".join(map(str, prompt_ids)).encode()).hexdigest()[:32]


def pending_prompt_ids(*, session: Session, project: Project) -> set[int]:
    """Prompts that a queued or running sampling job of this project will give tasks to."""
    payloads = session.scalars(select(Job.payload).where(
        Job.project_id == project.id, Job.kind == JobKind.sample, Job.state.in_(jobs.ACTIVE)))
    return {pid for payload in payloads for pid in payload.get("prompt_ids", [])}


def queue_sampling(*, session: Session, project: Project, prompt_ids: list[int], created_by_id: int | None = None,
                   batch: int = SAMPLE_BATCH) -> list[Job]:
    """Sampling jobs from the project's current policy for these prompts, in batches."""
    if project.current_policy_id is None:
        raise Invalid(f"project {project.name!r} has no current policy; register one and promote it",
                      code="no_policy")
    queued = []
    for start in range(0, len(prompt_ids), batch):
        chunk = prompt_ids[start:start + batch]
        queued.append(jobs.enqueue(
            session=session, kind=JobKind.sample, project_id=project.id, created_by_id=created_by_id,
            payload={"prompt_ids": chunk, "model_version_id": project.current_policy_id},
            dedupe_key=f"sample:{project.id}:{project.current_policy_id}:{_digest(chunk)}",
        ))
    return queued


def ensure_ready_tasks(*, session: Session, project: Project, target: int, extra: int = 0,
                       created_by_id: int | None = None, batch: int = SAMPLE_BATCH) -> list[Job]:
    """Queue sampling so that open tasks plus those being sampled reach `target` (+ `extra`); returns the new jobs."""
    if project.current_policy_id is None:
        return []
    open_tasks = session.scalar(select(func.count()).select_from(Task).where(
        Task.project_id == project.id, Task.state == TaskState.open)) or 0
    pending = pending_prompt_ids(session=session, project=project)
    need = target + extra - open_tasks - len(pending)
    if need <= 0:
        return []
    sampled_by_policy = exists().where(
        Task.prompt_id == Prompt.id, TaskCompletion.task_id == Task.id, Completion.id == TaskCompletion.completion_id,
        Completion.model_version_id == project.current_policy_id)
    query = select(Prompt.id).where(Prompt.project_id == project.id, ~sampled_by_policy).order_by(Prompt.id)
    if pending:
        query = query.where(Prompt.id.not_in(pending))
    prompt_ids = list(session.scalars(query.limit(need)))
    return queue_sampling(session=session, project=project, prompt_ids=prompt_ids, created_by_id=created_by_id,
                          batch=batch)


def list_tasks(*, session: Session, project: Project, state: TaskState | None = None, prompt_id: int | None = None,
               after_id: int | None = None, limit: int = 100) -> list[tuple[Task, list[Completion]]]:
    query = select(Task).where(Task.project_id == project.id).order_by(Task.id).limit(limit)
    if state is not None:
        query = query.where(Task.state == state)
    if prompt_id is not None:
        query = query.where(Task.prompt_id == prompt_id)
    if after_id is not None:
        query = query.where(Task.id > after_id)
    tasks = list(session.scalars(query))
    if not tasks:
        return []
    rows = session.execute(
        select(TaskCompletion.task_id, Completion).join(Completion, Completion.id == TaskCompletion.completion_id)
        .where(TaskCompletion.task_id.in_([t.id for t in tasks])).order_by(TaskCompletion.task_id, TaskCompletion.position))
    by_task: dict[int, list[Completion]] = {t.id: [] for t in tasks}
    for task_id, completion in rows:
        by_task[task_id].append(completion)
    return [(t, by_task[t.id]) for t in tasks]


def integrity_report(*, session: Session, project_id: int | None = None) -> dict[str, int]:
    """What the database holds against the invariants one submission's transaction keeps, counted in SQL.

    `half_written`: judgments without exactly one rating per completion of their task, without all K-choose-2
    comparisons, or whose assignment is not marked submitted; `counter_mismatch`: tasks whose labels_done is not
    their number of judgments; `over_collected`: tasks (gold ones aside) with more judgments than they need;
    `duplicated`: judgments beyond the first of one labeler on one task or of one Idempotency-Key.
    """
    def scoped(query: Select, task_column: Any) -> Select:
        if project_id is None:
            return query
        return query.where(task_column.in_(select(Task.id).where(Task.project_id == project_id)))

    k = (select(TaskCompletion.task_id, func.count().label("k")).group_by(TaskCompletion.task_id).subquery())
    ratings = (select(CompletionRating.judgment_id, func.count().label("n"))
               .group_by(CompletionRating.judgment_id).subquery())
    pairs = select(Comparison.judgment_id, func.count().label("n")).group_by(Comparison.judgment_id).subquery()
    per_judgment = scoped(
        select(Judgment.id, k.c.k, func.coalesce(ratings.c.n, 0).label("ratings"),
               func.coalesce(pairs.c.n, 0).label("pairs"), Assignment.state)
        .join(k, k.c.task_id == Judgment.task_id).join(Assignment, Assignment.id == Judgment.assignment_id)
        .outerjoin(ratings, ratings.c.judgment_id == Judgment.id).outerjoin(pairs, pairs.c.judgment_id == Judgment.id),
        Judgment.task_id)
    judged = (select(Judgment.task_id, func.count().label("n")).group_by(Judgment.task_id).subquery())
    per_task = scoped(select(Task.labels_done, Task.labels_needed, Task.gold_ranks.is_not(None).label("gold"),
                             func.coalesce(judged.c.n, 0).label("judgments"))
                      .outerjoin(judged, judged.c.task_id == Task.id), Task.id)
    judgments = half_written = 0
    for row in session.execute(per_judgment):
        judgments += 1
        half_written += (row.ratings != row.k or row.pairs != row.k * (row.k - 1) // 2
                         or row.state != AssignmentState.submitted)
    counter_mismatch = over_collected = 0
    for row in session.execute(per_task):
        counter_mismatch += row.labels_done != row.judgments
        over_collected += row.judgments > row.labels_needed and not row.gold
    duplicated = 0
    for columns in ((Judgment.task_id, Judgment.user_id), (Judgment.user_id, Judgment.idempotency_key)):
        groups = scoped(select(func.count().label("n")).select_from(Judgment).group_by(*columns),
                        Judgment.task_id).subquery()
        duplicated += session.scalar(select(func.coalesce(func.sum(groups.c.n - 1), 0))) or 0
    return {"judgments": judgments, "half_written": half_written, "counter_mismatch": counter_mismatch,
            "over_collected": over_collected, "duplicated": int(duplicated)}
