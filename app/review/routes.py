"""Agreement figures and review actions over /api/v1 (admins only)."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import AdminReader, AdminUser, SessionDep, SettingsDep
from app.labeling.models import Judgment, Task
from app.projects.service import get_project
from app.review import actions, gold, queue, service
from app.review.schemas import (
    AgreementRead, ExcludeRequest, GoldRequest, JudgmentExclusionRead, LabelerExclusionRead, ReopenRequest,
    ReviewQueue, TaskReview, TaskStateRead,
)
from app.users.models import User

api = APIRouter(tags=["review"])


def task_state(task: Task) -> TaskStateRead:
    return TaskStateRead(id=task.id, project_id=task.project_id, state=task.state, labels_needed=task.labels_needed,
                         labels_done=task.labels_done, gold_ranks=task.gold_ranks)


def judgment_exclusion(judgment: Judgment) -> JudgmentExclusionRead:
    return JudgmentExclusionRead(id=judgment.id, task_id=judgment.task_id, user_id=judgment.user_id,
                                 excluded=judgment.excluded, excluded_reason=judgment.excluded_reason)


def admin_task(session: SessionDep, admin: User, task_id: int) -> Task:
    task = actions.get_task(session=session, task_id=task_id)
    get_project(session=session, project_id=task.project_id, user=admin)
    return task


@api.get("/projects/{project_id}/agreement", response_model=AgreementRead,
         summary="Agreement per project, task and labeler; consensus; model leaderboard (the dashboard's numbers)")
def agreement(project_id: int, session: SessionDep, admin: AdminReader,
              task_limit: Annotated[int, Query(ge=0, le=5000)] = 100,
              task_offset: Annotated[int, Query(ge=0)] = 0) -> AgreementRead:
    project = get_project(session=session, project_id=project_id, user=admin)
    return AgreementRead.model_validate(service.project_agreement(session=session, project=project,
                                                                  task_limit=task_limit, task_offset=task_offset))


@api.get("/projects/{project_id}/review-queue", response_model=ReviewQueue,
         summary="Tasks with low agreement, completions flagged as harmful, reported prompts")
def review_queue(project_id: int, session: SessionDep, admin: AdminReader, settings: SettingsDep,
                 threshold: Annotated[float | None, Query(ge=-1, le=1)] = None) -> ReviewQueue:
    project = get_project(session=session, project_id=project_id, user=admin)
    limit = settings.review_min_agreement if threshold is None else threshold
    return ReviewQueue.model_validate(queue.review_queue(session=session, project=project, threshold=limit))


@api.get("/tasks/{task_id}/review", response_model=TaskReview, summary="A task's judgments side by side")
def task_review(task_id: int, session: SessionDep, admin: AdminReader) -> TaskReview:
    task = admin_task(session, admin, task_id)
    project = get_project(session=session, project_id=task.project_id, user=admin)
    return TaskReview.model_validate(queue.task_review(session=session, task=task, project=project))


@api.post("/judgments/{judgment_id}/exclude", response_model=JudgmentExclusionRead,
          summary="Keep a judgment but leave it out of figures, exports and training")
def exclude_judgment(judgment_id: int, body: ExcludeRequest, session: SessionDep,
                     admin: AdminUser) -> JudgmentExclusionRead:
    judgment = actions.get_judgment(session=session, judgment_id=judgment_id)
    admin_task(session, admin, judgment.task_id)
    actions.exclude_judgment(session=session, judgment=judgment, reason=body.reason)
    session.commit()
    return judgment_exclusion(judgment)


@api.post("/judgments/{judgment_id}/include", response_model=JudgmentExclusionRead,
          summary="Count an excluded judgment again")
def include_judgment(judgment_id: int, session: SessionDep, admin: AdminUser) -> JudgmentExclusionRead:
    judgment = actions.get_judgment(session=session, judgment_id=judgment_id)
    admin_task(session, admin, judgment.task_id)
    actions.include_judgment(session=session, judgment=judgment)
    session.commit()
    return judgment_exclusion(judgment)


@api.post("/projects/{project_id}/labelers/{user_id}/exclude", response_model=LabelerExclusionRead,
          summary="Exclude all of a labeler's judgments in the project, and their later ones")
def exclude_labeler(project_id: int, user_id: int, body: ExcludeRequest, session: SessionDep,
                    admin: AdminUser) -> LabelerExclusionRead:
    project = get_project(session=session, project_id=project_id, user=admin)
    labeler = actions.get_user(session=session, user_id=user_id)
    _exclusion, changed = actions.exclude_labeler(session=session, project=project, labeler=labeler,
                                                  reason=body.reason, admin=admin)
    session.commit()
    return LabelerExclusionRead(project_id=project.id, user_id=labeler.id, excluded=True, changed=changed)


@api.post("/projects/{project_id}/labelers/{user_id}/include", response_model=LabelerExclusionRead,
          summary="Undo a labeler's exclusion (judgments excluded one by one stay out)")
def include_labeler(project_id: int, user_id: int, session: SessionDep, admin: AdminUser) -> LabelerExclusionRead:
    project = get_project(session=session, project_id=project_id, user=admin)
    labeler = actions.get_user(session=session, user_id=user_id)
    changed = actions.include_labeler(session=session, project=project, labeler=labeler)
    session.commit()
    return LabelerExclusionRead(project_id=project.id, user_id=labeler.id, excluded=False, changed=changed)


@api.post("/tasks/{task_id}/reopen", response_model=TaskStateRead, summary="Ask for more labels on a task")
def reopen_task(task_id: int, body: ReopenRequest, session: SessionDep, admin: AdminUser) -> TaskStateRead:
    task = admin_task(session, admin, task_id)
    actions.reopen_task(session=session, task=task, extra_labels=body.extra_labels)
    session.commit()
    return task_state(task)


@api.put("/tasks/{task_id}/gold", response_model=TaskStateRead,
         summary="Make a task gold with a known ranking; it is mixed into queues at the project's gold rate")
def set_gold(task_id: int, body: GoldRequest, session: SessionDep, admin: AdminUser) -> TaskStateRead:
    task = admin_task(session, admin, task_id)
    project = get_project(session=session, project_id=task.project_id, user=admin)
    gold.set_gold(session=session, task=task, project=project, ranks=body.ranks)
    session.commit()
    return task_state(task)


@api.delete("/tasks/{task_id}/gold", response_model=TaskStateRead, summary="A gold task becomes an ordinary one")
def clear_gold(task_id: int, session: SessionDep, admin: AdminUser) -> TaskStateRead:
    task = admin_task(session, admin, task_id)
    gold.clear_gold(session=session, task=task)
    session.commit()
    return task_state(task)
