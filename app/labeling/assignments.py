"""The labeling queue: lease a task to a labeler with exact overlap, heartbeat, skip, expire.

A task takes exactly `labels_needed` judgments. A lease counts against that capacity until it is
submitted, skipped or expires. Leasing locks the task row (FOR UPDATE SKIP LOCKED on PostgreSQL,
the database write lock on SQLite) and counts again after the lock, so fifty labelers asking at
once never get more leases than a task has room for.
"""

import random
from datetime import timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from app.db import begin_write, get_by_id, utcnow
from app.errors import Conflict, NotFound
from app.labeling.models import Assignment, AssignmentState, Task, TaskCompletion, TaskState
from app.projects.models import Project
from app.review.gold import gold_task_due
from app.users.models import User

DEFAULT_LEASE = timedelta(minutes=30)
CANDIDATES_PER_TRY = 20


def _expire_stale(session: Session, task_ids: list[int] | None = None) -> None:
    stale = (Assignment.state == AssignmentState.leased) & (Assignment.lease_expires_at < utcnow())
    if task_ids is not None:
        stale &= Assignment.task_id.in_(task_ids)
    session.execute(update(Assignment).where(stale).values(state=AssignmentState.expired))


def _taken(session: Session, task_id: int) -> int:
    """Leases and submissions that count against the task's capacity (read after locking the task)."""
    return session.scalar(select(func.count()).select_from(Assignment).where(
        Assignment.task_id == task_id,
        Assignment.state.in_((AssignmentState.leased, AssignmentState.submitted)))) or 0


def active_assignment(*, session: Session, project: Project, user: User) -> Assignment | None:
    return session.scalar(
        select(Assignment).join(Task, Task.id == Assignment.task_id)
        .where(Task.project_id == project.id, Assignment.user_id == user.id,
               Assignment.state == AssignmentState.leased, Assignment.lease_expires_at > utcnow())
        .order_by(Assignment.id).limit(1))


def lease_next(*, session: Session, project: Project, user: User, lease: timedelta = DEFAULT_LEASE) -> Assignment | None:
    """The caller's current lease in this project, or a new one on a task with room; None when none is left."""
    begin_write(session)
    current = active_assignment(session=session, project=project, user=user)
    if current is not None:
        return current
    if project.gold_rate > 0:  # no gold query on the hot path while the project has gold off
        gold = gold_task_due(session=session, project=project, user=user)
        if gold is not None:
            return _lease(session, gold, user, lease)
    seen = exists().where(Assignment.task_id == Task.id, Assignment.user_id == user.id,
                          Assignment.state.in_((AssignmentState.submitted, AssignmentState.skipped,
                                                AssignmentState.leased)))
    tried: list[int] = []
    while True:
        query = (select(Task).where(Task.project_id == project.id, Task.state == TaskState.open, ~seen)
                 # Finish tasks that are partly labeled before starting new ones.
                 .order_by(Task.labels_done.desc(), Task.id).limit(1).with_for_update(skip_locked=True))
        if tried:
            query = query.where(Task.id.not_in(tried))
        task = session.scalar(query)
        if task is None:
            return None
        _expire_stale(session, [task.id])
        if _taken(session, task.id) >= task.labels_needed:
            tried.append(task.id)
            continue
        return _lease(session, task, user, lease)


def _lease(session: Session, task: Task, user: User, lease: timedelta) -> Assignment:
    order = list(session.scalars(select(TaskCompletion.completion_id).where(TaskCompletion.task_id == task.id)
                                 .order_by(TaskCompletion.position)))
    random.shuffle(order)  # stored, so position bias can be measured
    now = utcnow()
    assignment = session.scalar(select(Assignment).where(Assignment.task_id == task.id,
                                                         Assignment.user_id == user.id))
    if assignment is None:
        assignment = Assignment(task_id=task.id, user_id=user.id)
        session.add(assignment)
    # A labeler whose own lease expired gets the task back with a fresh order.
    assignment.state, assignment.display_order = AssignmentState.leased, order
    assignment.leased_at, assignment.lease_expires_at, assignment.skip_reason = now, now + lease, None
    session.flush()
    return assignment


def get_assignment(*, session: Session, assignment_id: int, user: User) -> Assignment:
    assignment = get_by_id(session, Assignment, assignment_id)
    if assignment is None or assignment.user_id != user.id:
        raise NotFound(f"assignment {assignment_id} not found", code="assignment_not_found")
    return assignment


def heartbeat(*, session: Session, assignment: Assignment, lease: timedelta = DEFAULT_LEASE) -> Assignment:
    """Keep a lease alive while the task page is open."""
    if assignment.state != AssignmentState.leased or assignment.lease_expires_at < utcnow():
        raise Conflict("this lease has ended; ask for the next task", code="lease_ended")
    assignment.lease_expires_at = utcnow() + lease
    session.flush()
    return assignment


def skip(*, session: Session, assignment: Assignment, reason: str) -> Assignment:
    """Give the task back: another labeler gets the slot, this one never sees it again."""
    if assignment.state != AssignmentState.leased:
        raise Conflict(f"this assignment is {assignment.state}; only a leased task can be skipped",
                       code="not_leased")
    assignment.state, assignment.skip_reason = AssignmentState.skipped, reason[:2000]
    session.flush()
    return assignment


