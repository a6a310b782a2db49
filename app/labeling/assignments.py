"""The labeling queue: lease a task to a labeler with exact overlap, heartbeat, skip, expire.

A task takes exactly `labels_needed` judgments. A lease counts against that capacity until it is
submitted, skipped or expires. Leasing locks the task row (FOR UPDATE SKIP LOCKED on PostgreSQL,
the database write lock on SQLite) and counts again after the lock, so fifty labelers asking at
once never get more leases than a task has room for.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, or_, select, true, update
from sqlalchemy.orm import Session

from app.db import MAX_ROW_ID, begin_write, get_by_id, utcnow
from app.errors import Conflict, NotFound
from app.labeling.models import Assignment, AssignmentState, Task, TaskCompletion, TaskState
from app.projects.models import Project, ProjectMember
from app.projects.service import may_see, project_not_found
from app.review.gold import gold_task_due
from app.prompts.models import Completion, Prompt
from app.users.models import Caller, User

DEFAULT_LEASE = timedelta(minutes=30)


@dataclass(frozen=True)
class Lease:
    """A held lease with what the labeler is shown: the prompt and the completions in display order."""

    id: int
    task_id: int
    lease_expires_at: datetime
    prompt: dict[str, Any]
    completions: list[tuple[int, str]]


_task, _assignment, _prompt = Task.__table__, Assignment.__table__, Prompt.__table__
_completion, _task_completion = Completion.__table__, TaskCompletion.__table__
_project, _member = Project.__table__, ProjectMember.__table__

# The queue's statements are built once: constructing SQLAlchemy statements costs more CPU than
# running them, and every labeler asks several times a minute.
# Two comparisons, not IN (...): SQLAlchemy expands an IN list again at every execution.
_SEEN = exists().where(_assignment.c.task_id == _task.c.id, _assignment.c.user_id == bindparam("user_id"),
                       or_(_assignment.c.state == AssignmentState.submitted,
                           _assignment.c.state == AssignmentState.skipped))
_HOLDING = or_(_assignment.c.state == AssignmentState.submitted,
               and_(_assignment.c.state == AssignmentState.leased, _assignment.c.lease_expires_at > bindparam("now")))
_STALE = and_(_assignment.c.state == AssignmentState.leased, _assignment.c.lease_expires_at <= bindparam("now"))


def _per_task(expression: Any, task_id: Any) -> Any:
    return select(expression).where(_assignment.c.task_id == task_id).scalar_subquery()


_CANDIDATE = (select(_task.c.id, _task.c.labels_needed, _prompt.c.id.label("prompt_id"), _prompt.c.kind,
                     _prompt.c.text, _prompt.c.messages)
              .join(_prompt, _prompt.c.id == _task.c.prompt_id)
              .where(_task.c.project_id == bindparam("project_id"), _task.c.state == TaskState.open, ~_SEEN,
                     # Skips tasks whose slots are all leased (as of this statement; counted again after the lock).
                     _per_task(func.count(), _task.c.id).where(_HOLDING) < _task.c.labels_needed)
              # Finish tasks that are partly labeled before starting new ones.
              .order_by(_task.c.labels_done.desc(), _task.c.id).limit(1)
              .with_for_update(of=_task, skip_locked=True))
_CANDIDATE_NOT_TRIED = _CANDIDATE.where(_task.c.id.not_in(bindparam("tried", expanding=True)))
# After the lock: who holds the task now (a fresh statement sees every committed lease), with its completions.
_CAPACITY_AND_TEXTS = (
    select(_completion.c.id, _completion.c.text,
           _per_task(func.count(), bindparam("task_id")).where(_HOLDING).label("taken"),
           _per_task(func.count(), bindparam("task_id")).where(_STALE).label("stale"),
           _per_task(func.max(_assignment.c.id), bindparam("task_id"))
           .where(_assignment.c.user_id == bindparam("user_id")).label("mine"))
    .join(_task_completion, _task_completion.c.completion_id == _completion.c.id)
    .where(_task_completion.c.task_id == bindparam("task_id")))
_EXPIRE = update(_assignment).where(_assignment.c.task_id == bindparam("stale_task_id"), _STALE).values(
    state=AssignmentState.expired)
_TEXTS = (select(_completion.c.id, _completion.c.text)
          .join(_task_completion, _task_completion.c.completion_id == _completion.c.id)
          .where(_task_completion.c.task_id == bindparam("task_id")))
_PROMPT = (select(_prompt.c.id, _prompt.c.kind, _prompt.c.text, _prompt.c.messages)
           .join(_task, _task.c.prompt_id == _prompt.c.id).where(_task.c.id == bindparam("task_id")))
_ACTIVE = (select(_assignment.c.id, _assignment.c.task_id, _assignment.c.lease_expires_at,
                  _assignment.c.display_order)
           .join(_task, _task.c.id == _assignment.c.task_id)
           .where(_task.c.project_id == bindparam("project_id"), _assignment.c.user_id == bindparam("user_id"),
                  _assignment.c.state == AssignmentState.leased, _assignment.c.lease_expires_at > bindparam("now"))
           .order_by(_assignment.c.id).limit(1).subquery("active"))
# The project (is it there, may the caller see it, is gold on) with the caller's current lease in it, if any.
_OPENING = (select(_project.c.gold_rate, _member.c.user_id.label("member"), *_ACTIVE.c)
            .select_from(_project)
            .outerjoin(_member, and_(_member.c.project_id == _project.c.id, _member.c.user_id == bindparam("user_id")))
            .outerjoin(_ACTIVE, true())
            .where(_project.c.id == bindparam("project_id")))
_INSERT = insert(_assignment).returning(_assignment.c.id)
_RELEASE = update(_assignment).where(_assignment.c.id == bindparam("assignment_id"))


def _lease_of(connection: Any, assignment_id: int, task_id: int, expires: datetime, order: list[int]) -> Lease:
    prompt = connection.execute(_PROMPT, {"task_id": task_id}).one()
    texts = dict(connection.execute(_TEXTS, {"task_id": task_id}).all())
    return Lease(assignment_id, task_id, expires, _prompt_dict(prompt), [(cid, texts[cid]) for cid in order])


def _prompt_dict(row: Any) -> dict[str, Any]:
    return {"id": row[0], "kind": row.kind, "text": row.text, "messages": row.messages}


def shown(*, session: Session, assignment: Assignment) -> Lease:
    """A lease as its labeler sees it (for a heartbeat or a reopened judgment)."""
    return _lease_of(session.connection(), assignment.id, assignment.task_id, assignment.lease_expires_at,
                     assignment.display_order)


def lease_next(*, session: Session, project_id: int, user: User | Caller,
               lease: timedelta = DEFAULT_LEASE) -> Lease | None:
    """The caller's current lease in this project, or a new one on a task with room; None when none is left.
    A project that is missing or not the caller's is NotFound, as get_project answers.

    A few statements: the project with the caller's current lease, find and lock a candidate with room,
    count what holds it again after the lock (a fresh statement sees every committed lease) while reading
    its completions, write the lease.
    """
    if not 0 < project_id <= MAX_ROW_ID:
        raise project_not_found(project_id)
    begin_write(session)
    connection = session.connection()
    now = utcnow()
    ids = {"project_id": project_id, "user_id": user.id, "now": now}
    opening = connection.execute(_OPENING, ids).one_or_none()
    if opening is None or not may_see(user, opening.member):
        raise project_not_found(project_id)
    if opening.id is not None:
        return _lease_of(connection, opening.id, opening.task_id, opening.lease_expires_at, opening.display_order)
    if opening.gold_rate > 0:  # no gold query on the hot path while the project has gold off
        gold = gold_task_due(session=session, project_id=project_id, gold_rate=opening.gold_rate, user=user)
        if gold is not None:
            # Gold tasks take every labeler (no capacity to lock); the (task, labeler) key keeps it once each.
            mine = connection.execute(select(_assignment.c.id).where(
                _assignment.c.task_id == gold.id, _assignment.c.user_id == user.id)).scalar()
            prompt = connection.execute(_PROMPT, {"task_id": gold.id}).one()
            texts = dict(connection.execute(_TEXTS, {"task_id": gold.id}).all())
            return _write_lease(connection, gold.id, user.id, mine, _prompt_dict(prompt), texts, now, lease)
    tried: list[int] = []
    while True:
        candidate = connection.execute(_CANDIDATE_NOT_TRIED if tried else _CANDIDATE, {**ids, "tried": tried}
                                       ).one_or_none()
        if candidate is None:
            return None
        task_id = candidate[0]
        rows = connection.execute(_CAPACITY_AND_TEXTS, {**ids, "task_id": task_id}).all()
        taken, expired, mine = rows[0].taken, rows[0].stale, rows[0].mine
        if taken >= candidate.labels_needed:
            tried.append(task_id)  # a lease committed between the candidate's snapshot and its lock
            continue
        if expired:
            connection.execute(_EXPIRE, {"stale_task_id": task_id, "now": now})
        prompt = {"id": candidate.prompt_id, "kind": candidate.kind, "text": candidate.text,
                  "messages": candidate.messages}
        return _write_lease(connection, task_id, user.id, mine, prompt, {r.id: r.text for r in rows}, now, lease)


def _write_lease(connection: Any, task_id: int, user_id: int, mine: int | None, prompt: dict[str, Any],
                 texts: dict[int, str], now: datetime, lease: timedelta) -> Lease:
    """Lease the task to the labeler: a new assignment, or theirs again when their lease on it expired."""
    order = sorted(texts)
    random.shuffle(order)  # stored, so position bias can be measured
    values = {"state": AssignmentState.leased, "display_order": order, "leased_at": now,
              "lease_expires_at": now + lease, "skip_reason": None}
    if mine is None:
        mine = connection.execute(_INSERT, {"task_id": task_id, "user_id": user_id, **values}).scalar_one()
    else:  # the task comes back with a fresh order
        connection.execute(_RELEASE, {"assignment_id": mine, **values})
    return Lease(mine, task_id, values["lease_expires_at"], prompt, [(cid, texts[cid]) for cid in order])


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


