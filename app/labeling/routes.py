"""Tasks, leases and judgments over /api/v1."""

from datetime import datetime
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import MAX_ROW_ID, iso, next_cursor
from app.deps import AdminReader, CurrentUser, CursorQuery, LabelingUser, SessionDep, labeler_in_route
from app.errors import Invalid
from app.labeling import assignments, judgments, listing, service
from app.labeling.models import Assignment, Judgment, Task, TaskState
from app.labeling.schemas import (
    AssignmentRead, ComparisonList, ComparisonRead, CompletionRead, JudgmentAdminList, JudgmentAdminRead, JudgmentCreate,
    JudgmentDetail, JudgmentList, JudgmentRead, SkipRequest, TaskList, TaskRead,
)
from app.models.service import completion_scores
from app.pages import render, render_markdown
from app.projects.service import get_project

api = APIRouter(prefix="/projects/{project_id}/tasks", tags=["tasks"])
labeling_api = APIRouter(tags=["labeling"])
pages = APIRouter(include_in_schema=False)


@api.get("", response_model=TaskList, summary="Tasks with their completions and state (admin), by cursor")
def list_tasks(project_id: int, session: SessionDep, admin: AdminReader,
               state: Annotated[TaskState | None, Query()] = None,
               prompt_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
               cursor: CursorQuery = None, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> TaskList:
    project = get_project(session=session, project_id=project_id, user=admin)
    rows = service.list_tasks(session=session, project=project, state=state, prompt_id=prompt_id, after_id=cursor,
                              limit=limit)
    scores = completion_scores(session=session, completion_ids=[c.id for _t, cs in rows for c in cs])
    items = [TaskRead(id=t.id, prompt_id=t.prompt_id, state=t.state, labels_needed=t.labels_needed,
                      labels_done=t.labels_done, created_at=t.created_at,
                      completions=[CompletionRead.model_validate(c).model_copy(update={"scores": scores.get(c.id, {})})
                                   for c in completions])
             for t, completions in rows]
    return TaskList(items=items, next_cursor=items[-1].id if len(items) == limit else None)


@lru_cache(maxsize=20_000)
def _completion_html(text: str) -> str:
    # Keyed by the text itself (completions never change): heartbeats and re-leases reuse it.
    return str(render_markdown(text))


def _assignment_read(lease: assignments.Lease) -> dict:
    """The lease as JSON: html is the markdown rendered with raw HTML escaped, as the labeling page shows it."""
    return {"id": lease.id, "task_id": lease.task_id, "lease_expires_at": iso(lease.lease_expires_at),
            "prompt": lease.prompt,
            "completions": [{"id": cid, "text": text, "html": _completion_html(text)} for cid, text in lease.completions]}


def leased(request: Request, session: Session, project_id: int) -> Response:
    """POST /projects/{project_id}/assignments once its input is valid (the route below and app/labeling/fastpath.py)."""
    user = labeler_in_route(request, session)
    lease = assignments.lease_next(session=session, project_id=project_id, user=user)  # 404s as get_project
    session.commit()
    if lease is None:
        return Response(status_code=204)
    return JSONResponse(_assignment_read(lease), status_code=201)


def submitted(request: Request, session: Session, assignment_id: int, body: JudgmentCreate,
              idempotency_key: str) -> Response:
    """POST /assignments/{assignment_id}/judgment once its input is valid (the route below and fastpath.py)."""
    user = labeler_in_route(request, session)
    summary = judgments.submit_judgment(session=session, assignment_id=assignment_id, user=user, body=body,
                                        idempotency_key=idempotency_key)
    session.commit()
    # The summary is built by the service from what it wrote; skip a second validation pass.
    return JSONResponse({**summary, "created_at": iso(summary["created_at"])}, status_code=201)


# The queue's two busiest routes. A request with ordinary input is answered by app/labeling/fastpath.py,
# which skips FastAPI's dispatch and calls the same functions; these routes answer the rest (and document both).
@labeling_api.post("/projects/{project_id}/assignments", response_model=AssignmentRead, status_code=201,
                   responses={204: {"description": "No task is waiting for this labeler"}},
                   summary="Lease the next task (or the one you hold) for labeling")
def lease_next(project_id: int, request: Request, session: SessionDep) -> Response:
    return leased(request, session, project_id)


@labeling_api.post("/assignments/{assignment_id}/judgment", response_model=JudgmentRead, status_code=201,
                   summary="Submit a ranking and ratings; the Idempotency-Key makes retries safe")
def submit(assignment_id: int, body: JudgmentCreate, request: Request, session: SessionDep,
           idempotency_key: Annotated[str, Header(max_length=judgments.MAX_KEY_CHARS)]) -> Response:
    return submitted(request, session, assignment_id, body, idempotency_key)


@labeling_api.get("/judgments", response_model=JudgmentList,
                  summary="Your judgments in a project, newest first, by cursor")
def my_judgments(session: SessionDep, user: CurrentUser, project_id: Annotated[int, Query()],
                 cursor: CursorQuery = None, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> JudgmentList:
    project = get_project(session=session, project_id=project_id, user=user)
    found = judgments.recent_judgments(session=session, project=project, user=user, limit=limit, before_id=cursor)
    return JudgmentList(items=[JudgmentRead.model_validate(judgments.judgment_summary(session=session, judgment=j))
                               for j in found], next_cursor=next_cursor(found, limit))


@labeling_api.get("/projects/{project_id}/judgments", response_model=JudgmentAdminList,
                  summary="Every judgment of a project with its ranks and ratings (admin), by cursor")
def project_judgments(project_id: int, session: SessionDep, admin: AdminReader,
                      labeler_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                      task_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                      excluded: bool | None = None, since: datetime | None = None, until: datetime | None = None,
                      cursor: CursorQuery = None, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> JudgmentAdminList:
    project = get_project(session=session, project_id=project_id, user=admin)
    found = listing.list_judgments(session=session, project=project, labeler_id=labeler_id, task_id=task_id,
                                   excluded=excluded, since=_aware(since), until=_aware(until), after_id=cursor,
                                   limit=limit)
    return JudgmentAdminList(items=[JudgmentAdminRead.model_validate(j) for j in found],
                             next_cursor=next_cursor(found, limit))


@labeling_api.get("/projects/{project_id}/comparisons", response_model=ComparisonList,
                  summary="The K-choose-2 pairs of a project's judgments (admin), by cursor")
def project_comparisons(project_id: int, session: SessionDep, admin: AdminReader,
                        judgment_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                        task_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                        labeler_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                        completion_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                        tie: bool | None = None, cursor: CursorQuery = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> ComparisonList:
    project = get_project(session=session, project_id=project_id, user=admin)
    found = listing.list_comparisons(session=session, project=project, judgment_id=judgment_id, task_id=task_id,
                                     labeler_id=labeler_id, tie=tie, completion_id=completion_id, after_id=cursor,
                                     limit=limit)
    return ComparisonList(items=[ComparisonRead.model_validate(c) for c in found],
                          next_cursor=next_cursor(found, limit))


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise Invalid("give times with a time zone, e.g. 2026-11-22T00:00:00Z", code="naive_datetime")
    return moment


@labeling_api.get("/judgments/{judgment_id}", response_model=JudgmentDetail,
                  summary="One of your judgments, with the task as you saw it")
def my_judgment(judgment_id: int, session: SessionDep, user: CurrentUser) -> JudgmentDetail:
    judgment = judgments.get_own_judgment(session=session, judgment_id=judgment_id, user=user)
    detail = judgments.judgment_detail(session=session, judgment=judgment)
    shown = _assignment_read(assignments.shown(session=session, assignment=session.get(Assignment, judgment.assignment_id)))
    return JudgmentDetail.model_validate({**detail, "prompt": shown["prompt"], "completions": shown["completions"]})


@labeling_api.put("/judgments/{judgment_id}", response_model=JudgmentRead,
                  summary="Revise your judgment; its pairs follow (Idempotency-Key as for submitting)")
def revise(judgment_id: int, body: JudgmentCreate, session: SessionDep, user: LabelingUser,
           idempotency_key: Annotated[str, Header(max_length=judgments.MAX_KEY_CHARS)]) -> JudgmentRead:
    judgment = judgments.get_own_judgment(session=session, judgment_id=judgment_id, user=user)
    judgments.revise_judgment(session=session, judgment=judgment, user=user, body=body, idempotency_key=idempotency_key)
    summary = judgments.judgment_summary(session=session, judgment=judgment)
    session.commit()
    return JudgmentRead.model_validate(summary)


@labeling_api.post("/assignments/{assignment_id}/heartbeat", response_model=AssignmentRead,
                   summary="Keep the lease while the task is open")
def heartbeat(assignment_id: int, session: SessionDep, user: LabelingUser) -> Response:
    assignment = assignments.get_assignment(session=session, assignment_id=assignment_id, user=user)
    assignments.heartbeat(session=session, assignment=assignment)
    body = _assignment_read(assignments.shown(session=session, assignment=assignment))
    session.commit()
    return JSONResponse(body)


@labeling_api.post("/assignments/{assignment_id}/skip", status_code=204, summary="Give the task back")
def skip(assignment_id: int, body: SkipRequest, session: SessionDep, user: LabelingUser) -> Response:
    assignment = assignments.get_assignment(session=session, assignment_id=assignment_id, user=user)
    assignments.skip(session=session, assignment=assignment, reason=body.reason)
    session.commit()
    return Response(status_code=204)


@pages.get("/projects/{project_id}/label")
def label_page(project_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """The labeling page; its script leases tasks and submits judgments through the API."""
    project = get_project(session=session, project_id=project_id, user=user)
    my_count = session.scalar(select(func.count()).select_from(Judgment).join(Task, Task.id == Judgment.task_id)
                              .where(Task.project_id == project.id, Judgment.user_id == user.id)) or 0
    recent = judgments.recent_judgments(session=session, project=project, user=user)
    return render(request, "labeling/label.html", {"user": user, "project": project, "my_count": my_count,
                                                   "recent": recent})
