"""Jobs: /api/v1/jobs."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import select

from app.db import MAX_ROW_ID, get_by_id, next_cursor, utcnow
from app.deps import AdminReader, AdminUser, CursorQuery, SessionDep, SettingsDep
from app.errors import Conflict, Invalid
from app.jobs import service
from app.jobs.training import queue_scoring, queue_training
from app.jobs.models import Job, JobKind, JobState
from app.jobs.schemas import JobCreate, JobList, JobRead
from app.labeling.service import ensure_ready_tasks, queue_sampling
from app.models.models import ModelVersion
from app.pages import render
from app.plots import Series, line_chart
from app.projects.models import Project
from app.projects.service import get_project
from app.prompts.models import Prompt

api = APIRouter(prefix="/jobs", tags=["jobs"])
pages = APIRouter(include_in_schema=False)
MAX_PROMPTS_PER_REQUEST = 10_000


@api.post("", response_model=JobRead, status_code=201, summary="Queue one job (admin)")
def create_job(body: JobCreate, session: SessionDep, admin: AdminUser, settings: SettingsDep) -> JobRead:
    project = get_project(session=session, project_id=body.project_id, user=admin)
    if body.kind in (JobKind.train_reward, JobKind.train_dpo):
        job = queue_training(session=session, project=project, kind=body.kind, params=body.params,
                             created_by_id=admin.id, settings=settings)
    elif body.kind == JobKind.score:
        job = queue_scoring(session=session, project=project, params=body.params, created_by_id=admin.id)
    else:
        job = _queue_sample(session, project, body.params, admin.id)
    session.commit()
    return JobRead.model_validate(job)


def _queue_sample(session: SessionDep, project: Project, params: dict, admin_id: int) -> Job:
    prompt_ids = params.get("prompt_ids")
    count = params.get("count")
    if (prompt_ids is None) == (count is None):
        raise Invalid("sample params need exactly one of prompt_ids (a list) or count (a number)", code="invalid_params")
    if prompt_ids is not None:
        if (not isinstance(prompt_ids, list) or not prompt_ids or len(prompt_ids) > MAX_PROMPTS_PER_REQUEST
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in prompt_ids)):
            raise Invalid(f"prompt_ids must be a list of 1 to {MAX_PROMPTS_PER_REQUEST} prompt ids", code="invalid_params")
        known = set(session.scalars(select(Prompt.id).where(Prompt.project_id == project.id, Prompt.id.in_(prompt_ids))))
        unknown = sorted(set(prompt_ids) - known)
        if unknown:
            raise Invalid(f"no prompt {', '.join(map(str, unknown[:20]))} in project {project.id}", code="unknown_prompt")
        prompt_ids = sorted(set(prompt_ids))
        jobs = queue_sampling(session=session, project=project, prompt_ids=prompt_ids, created_by_id=admin_id,
                              batch=len(prompt_ids))
    else:
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PROMPTS_PER_REQUEST:
            raise Invalid(f"count must be a whole number from 1 to {MAX_PROMPTS_PER_REQUEST}", code="invalid_params")
        if project.current_policy_id is None:
            raise Invalid(f"project {project.name!r} has no current policy", code="no_policy")
        jobs = ensure_ready_tasks(session=session, project=project, target=0, extra=count, created_by_id=admin_id,
                                  batch=count)
        if not jobs:
            raise Conflict("nothing to sample: every prompt already has a task from the current policy or is "
                           "being sampled; import more prompts or pass prompt_ids", code="nothing_to_sample")
    return jobs[0]


@api.get("", response_model=JobList, summary="Jobs, newest first, by cursor (admin)")
def list_jobs(session: SessionDep, _admin: AdminReader, project_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
              state: Annotated[JobState | None, Query()] = None, kind: Annotated[JobKind | None, Query()] = None,
              cursor: CursorQuery = None, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobList:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    for column, value in ((Job.project_id, project_id), (Job.state, state), (Job.kind, kind)):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        query = query.where(Job.id < cursor)
    jobs = list(session.scalars(query))
    return JobList(items=[JobRead.model_validate(j) for j in jobs], next_cursor=next_cursor(jobs, limit))


@api.get("/{job_id}", response_model=JobRead, summary="One job: state, progress, timings, error (admin)")
def get_job(job_id: int, session: SessionDep, _admin: AdminReader) -> JobRead:
    return JobRead.model_validate(service.get_job(session=session, job_id=job_id))


@api.post("/{job_id}/cancel", response_model=JobRead, summary="Cancel a queued or running job (admin)")
def cancel_job(job_id: int, session: SessionDep, _admin: AdminUser) -> JobRead:
    job = service.cancel(session=session, job_id=job_id)
    session.commit()
    return JobRead.model_validate(job)


# Pages.

# The curves a training job's page draws: (chart title, y label, metric names).
CURVES = [
    ("Loss", "loss", ["loss", "eval/loss"]),
    ("Pairwise accuracy", "accuracy", ["accuracy", "eval/accuracy", "rewards/accuracies", "eval/rewards/accuracies"]),
    ("Reward margin", "margin", ["margin", "eval/margin", "rewards/margins", "eval/rewards/margins"]),
]


def job_charts(curves: dict[str, list[tuple[int, float]]]) -> list[Markup]:
    """Server-drawn SVG curves of a job's step metrics (only the charts it has points for)."""
    charts = []
    for title, y_label, names in CURVES:
        series = [Series(name, curves[name]) for name in names if curves.get(name)]
        if series:
            charts.append(line_chart(series, title=title, x_label="optimizer step", y_label=y_label))
    return charts


@pages.get("/jobs/{job_id}")
def job_page(job_id: int, request: Request, session: SessionDep, admin: AdminUser) -> Response:
    job = service.get_job(session=session, job_id=job_id)
    curves = service.job_metrics(session=session, job_id=job.id)
    model = session.scalar(select(ModelVersion).where(ModelVersion.created_by_job_id == job.id))
    return render(request, "jobs/job.html", {
        "job": job, "charts": job_charts(curves), "model": model,
        "project": get_by_id(session, Project, job.project_id) if job.project_id else None,
        "last": {name: points[-1] for name, points in curves.items()},
        "cancellable": job.state in service.ACTIVE, "now": utcnow(),
    })


@pages.post("/jobs/{job_id}/cancel")
def cancel_job_submit(job_id: int, session: SessionDep, _admin: AdminUser) -> Response:
    service.cancel(session=session, job_id=job_id)
    session.commit()
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
