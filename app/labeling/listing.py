"""Admin listings of a project's judgments and comparisons, filtered and paged by keyset."""

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.labeling.models import Comparison, CompletionRating, Judgment, Task
from app.projects.models import Project


def list_judgments(*, session: Session, project: Project, labeler_id: int | None = None, task_id: int | None = None,
                   excluded: bool | None = None, since: datetime | None = None, until: datetime | None = None,
                   after_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Judgments in id order with their ranks and ratings, as the admin API shows them."""
    query = (select(Judgment, Task.prompt_id).join(Task, Task.id == Judgment.task_id)
             .where(Task.project_id == project.id).order_by(Judgment.id).limit(limit))
    for column, value in ((Judgment.user_id, labeler_id), (Judgment.task_id, task_id), (Judgment.excluded, excluded)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Judgment.created_at >= since)
    if until is not None:
        query = query.where(Judgment.created_at < until)
    if after_id is not None:
        query = query.where(Judgment.id > after_id)
    found = session.execute(query).all()
    ratings: dict[int, list[CompletionRating]] = {j.id: [] for j, _ in found}
    if found:
        for rating in session.scalars(select(CompletionRating).where(CompletionRating.judgment_id.in_(ratings))
                                      .order_by(CompletionRating.completion_id)):
            ratings[rating.judgment_id].append(rating)
    return [{
        "id": j.id, "task_id": j.task_id, "prompt_id": prompt_id, "user_id": j.user_id,
        "assignment_id": j.assignment_id, "revision": j.revision, "created_at": j.created_at,
        "updated_at": j.updated_at, "duration_ms": j.duration_ms, "excluded": j.excluded,
        "excluded_reason": j.excluded_reason, "none_acceptable": j.none_acceptable, "rationale": j.rationale,
        "prompt_flags": j.prompt_flags, "demonstration": j.demonstration,
        "ranks": {str(r.completion_id): r.rank for r in ratings[j.id]},
        "ratings": {str(r.completion_id): {"likert": r.likert, "flags": r.flags, "note": r.note}
                    for r in ratings[j.id]},
    } for j, prompt_id in found]


def list_comparisons(*, session: Session, project: Project, judgment_id: int | None = None,
                     task_id: int | None = None, labeler_id: int | None = None, tie: bool | None = None,
                     completion_id: int | None = None, after_id: int | None = None,
                     limit: int = 500) -> list[dict[str, Any]]:
    """The K-choose-2 pairs of the project's judgments, in id order."""
    query = (select(Comparison, Judgment.user_id, Judgment.excluded).join(Judgment, Judgment.id == Comparison.judgment_id)
             .join(Task, Task.id == Comparison.task_id).where(Task.project_id == project.id)
             .order_by(Comparison.id).limit(limit))
    for column, value in ((Comparison.judgment_id, judgment_id), (Comparison.task_id, task_id),
                          (Judgment.user_id, labeler_id), (Comparison.is_tie, tie)):
        if value is not None:
            query = query.where(column == value)
    if completion_id is not None:
        query = query.where((Comparison.chosen_id == completion_id) | (Comparison.rejected_id == completion_id))
    if after_id is not None:
        query = query.where(Comparison.id > after_id)
    return [{"id": c.id, "judgment_id": c.judgment_id, "task_id": c.task_id, "user_id": user_id,
             "chosen_id": c.chosen_id, "rejected_id": c.rejected_id, "margin": c.margin, "is_tie": c.is_tie,
             "judgment_excluded": excluded} for c, user_id, excluded in session.execute(query)]
