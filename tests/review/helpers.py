"""Building labeled projects for review tests: tasks from several model versions, judgments by rule."""

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from app.labeling import assignments, judgments
from app.labeling.models import Judgment, Task, TaskCompletion
from app.labeling.schemas import JudgmentCreate, RatingIn
from app.models.models import ModelRole, ModelVersion
from app.prompts.models import Completion
from tests.labeling.test_judgments import make_tasks as make_labeling_tasks

# Given the completions in the order shown and the task, the ranks a labeler gives.
Ranker = Callable[[list[int], Task], dict[int, int]]


def make_versions(db: Session, *names: str) -> list[ModelVersion]:
    versions = [ModelVersion(role=ModelRole.policy, name=name, source="s", config={}, metrics={}) for name in names]
    db.add_all(versions)
    db.commit()
    return versions


def make_tasks(db: Session, project, *, n: int, versions: list[ModelVersion]) -> list[Task]:
    """n tasks of project.k completions; completion i of a task comes from versions[i % len(versions)]."""
    tasks = make_labeling_tasks(db, project, n=n, k=project.k)
    for task in tasks:
        for link in task_completions(task):
            db.get(Completion, link.completion_id).model_version_id = versions[link.position % len(versions)].id
    db.commit()
    return tasks


def by_position(*places: int) -> Ranker:
    """Rank completions by canonical position: places[p] is the rank of the completion at position p."""
    def rank(_shown: list[int], task: Task) -> dict[int, int]:
        ids = sorted(c.completion_id for c in task_completions(task))
        return {cid: places[p] for p, cid in enumerate(ids)}
    return rank


def task_completions(task: Task) -> list[TaskCompletion]:
    return list(object_session(task).scalars(select(TaskCompletion).where(TaskCompletion.task_id == task.id)
                                             .order_by(TaskCompletion.position)))


def label(db: Session, project, user, ranker: Ranker, *, duration_ms: int = 20_000,
          ratings: Callable[[int, int], RatingIn] | None = None, prompt_flags: list[str] | None = None,
          rationale: str = "") -> Judgment | None:
    """Lease the labeler's next task and submit a judgment; None when no task is waiting."""
    lease = assignments.lease_next(session=db, project_id=project.id, user=user)
    if lease is None:
        db.commit()
        return None
    task = db.get(Task, lease.task_id)
    ranks = ranker([cid for cid, _text in lease.completions], task)
    body = JudgmentCreate(ranks={str(c): r for c, r in ranks.items()}, duration_ms=duration_ms, rationale=rationale,
                          prompt_flags=prompt_flags or [],
                          ratings={str(c): ratings(c, r) for c, r in ranks.items()} if ratings else {})
    summary = judgments.submit_judgment(session=db, assignment_id=lease.id, user=user, body=body,
                                        idempotency_key=f"{user.id}-{lease.id}")
    db.commit()
    return db.get(Judgment, summary["id"])
