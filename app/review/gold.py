"""Gold tasks: an admin's known ranking on a task, mixed into labelers' queues at the project's rate."""

from math import floor

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.errors import Invalid
from app.labeling.models import Assignment, AssignmentState, Task, TaskCompletion, TaskState
from app.projects.models import Project
from app.users.models import Caller, User


def gold_task_due(*, session: Session, project_id: int, gold_rate: float, user: User | Caller) -> Task | None:
    """A gold task this labeler has not seen, when one is due: after n leases in the project,
    floor(gold_rate x n) of them are gold while gold tasks remain. Gold tasks take every labeler
    (they measure labelers, their labels_needed is no cap); None when not due or none is left."""
    leases, gold = session.execute(
        select(func.count(), func.count(Task.gold_ranks)).select_from(Assignment)
        .join(Task, Task.id == Assignment.task_id)
        .where(Task.project_id == project_id, Assignment.user_id == user.id)).one()
    if gold >= floor(gold_rate * (leases + 1) + 1e-9):
        return None
    seen = exists().where(Assignment.task_id == Task.id, Assignment.user_id == user.id,
                          Assignment.state.in_((AssignmentState.submitted, AssignmentState.skipped,
                                                AssignmentState.leased)))
    return session.scalar(
        select(Task).where(Task.project_id == project_id, Task.gold_ranks.is_not(None),
                           Task.state != TaskState.retired, ~seen)
        # The least-labeled first, so every gold task measures many labelers.
        .order_by(Task.labels_done, Task.id).limit(1))


def takes_gold_labels(task: Task) -> bool:
    """A gold task accepts a judgment from every labeler it is leased to, unless retired."""
    return task.gold_ranks is not None and task.state != TaskState.retired


def set_gold(*, session: Session, task: Task, project: Project, ranks: dict[str, int]) -> Task:
    """Make the task gold with this ranking of exactly its completions (1 = best, ties share a rank)."""
    ids = set(session.scalars(select(TaskCompletion.completion_id).where(TaskCompletion.task_id == task.id)))
    parsed = {int(cid): rank for cid, rank in ranks.items() if cid.isdecimal()}
    problems = []
    if parsed.keys() != ids or len(parsed) != len(ranks):
        problems.append(f"the gold ranking must rank exactly the task's completions {sorted(ids)}")
    if any(not 1 <= r <= len(ids) for r in ranks.values()) or min(ranks.values(), default=0) != 1:
        problems.append(f"ranks run from 1 (best) to at most {len(ids)}")
    if not project.allow_ties and len(set(ranks.values())) != len(ranks):
        problems.append("this project does not allow ties: give every completion its own rank")
    if problems:
        raise Invalid("; ".join(problems), code="invalid_gold")
    task.gold_ranks = {str(cid): parsed[cid] for cid in sorted(ids)}
    session.flush()
    return task


def clear_gold(*, session: Session, task: Task) -> Task:
    task.gold_ranks = None
    session.flush()
    return task
