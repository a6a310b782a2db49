"""What an admin does about labels: exclude or include judgments and labelers, reopen tasks."""

from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import get_by_id
from app.errors import NotFound
from app.labeling.models import Judgment, Task, TaskState
from app.projects.models import Project
from app.review.models import LabelerExclusion
from app.users.models import User

T = TypeVar("T")


def _get(session: Session, model: type[T], ident: int, name: str) -> T:
    row = get_by_id(session, model, ident)
    if row is None:
        raise NotFound(f"{name} {ident} not found", code=f"{name}_not_found")
    return row


def get_task(*, session: Session, task_id: int) -> Task:
    return _get(session, Task, task_id, "task")


def get_judgment(*, session: Session, judgment_id: int) -> Judgment:
    return _get(session, Judgment, judgment_id, "judgment")


def get_user(*, session: Session, user_id: int) -> User:
    return _get(session, User, user_id, "user")


def exclude_judgment(*, session: Session, judgment: Judgment, reason: str) -> Judgment:
    """Keep the judgment but leave it out of figures, exports and training."""
    judgment.excluded, judgment.excluded_reason = True, reason or "excluded by an admin"
    # Excluded on its own account now: including the labeler again keeps it out.
    judgment.excluded_with_labeler = False
    session.flush()
    return judgment


def include_judgment(*, session: Session, judgment: Judgment) -> Judgment:
    judgment.excluded, judgment.excluded_reason, judgment.excluded_with_labeler = False, None, False
    session.flush()
    return judgment


def _in_project(project: Project):
    return Judgment.task_id.in_(select(Task.id).where(Task.project_id == project.id))


def exclude_labeler(*, session: Session, project: Project, labeler: User, reason: str,
                    admin: User) -> tuple[LabelerExclusion, int]:
    """Exclude all of a labeler's judgments in the project, and those they submit later;
    returns the exclusion and how many judgments it newly left out."""
    exclusion = session.get(LabelerExclusion, (project.id, labeler.id))
    if exclusion is None:
        exclusion = LabelerExclusion(project_id=project.id, user_id=labeler.id, excluded_by_id=admin.id)
        session.add(exclusion)
    exclusion.reason = reason
    changed = session.execute(
        update(Judgment).where(Judgment.user_id == labeler.id, _in_project(project), Judgment.excluded.is_(False))
        .values(excluded=True, excluded_with_labeler=True, excluded_reason=exclusion.judgment_reason)
        .execution_options(synchronize_session=False)).rowcount
    session.flush()
    return exclusion, changed


def include_labeler(*, session: Session, project: Project, labeler: User) -> int:
    """Undo exclude_labeler: the judgments it left out come back (ones excluded one by one stay
    out); returns how many came back."""
    exclusion = session.get(LabelerExclusion, (project.id, labeler.id))
    if exclusion is not None:
        session.delete(exclusion)
    changed = session.execute(
        update(Judgment).where(Judgment.user_id == labeler.id, _in_project(project),
                               Judgment.excluded_with_labeler.is_(True))
        .values(excluded=False, excluded_with_labeler=False, excluded_reason=None)
        .execution_options(synchronize_session=False)).rowcount
    session.flush()
    return changed


def excluded_labeler_ids(*, session: Session, project: Project) -> set[int]:
    return set(session.scalars(select(LabelerExclusion.user_id).where(LabelerExclusion.project_id == project.id)))


def reopen_task(*, session: Session, task: Task, extra_labels: int) -> Task:
    """Ask for more labels: labels_needed goes up and the task is open again."""
    task.labels_needed += extra_labels
    task.state = TaskState.open
    session.flush()
    return task
