"""The model registry: /api/v1/models."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.db import next_cursor
from app.deps import AdminReader, AdminUser, CursorQuery, FormDep, SessionDep, SettingsDep
from app.errors import Invalid
from app.labeling.service import ensure_ready_tasks
from app.models import service
from app.models.models import ModelRole
from app.models.schemas import ModelCreate, ModelList, ModelRead, PromoteRequest
from app.projects.routes import project_read
from app.projects.schemas import ProjectRead
from app.pages import render
from app.projects.service import get_project, list_projects

api = APIRouter(prefix="/models", tags=["models"])
pages = APIRouter(include_in_schema=False)


@api.get("", response_model=ModelList, summary="Registered models in id order, by cursor (admin)")
def list_models(session: SessionDep, _admin: AdminReader, role: ModelRole | None = None, cursor: CursorQuery = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ModelList:
    models = service.list_models(session=session, role=role, after_id=cursor, limit=limit)
    return ModelList(items=[service.to_read(m) for m in models], next_cursor=next_cursor(models, limit))


@api.post("", response_model=ModelRead, status_code=201, summary="Register a policy (admin)")
def register_model(body: ModelCreate, session: SessionDep, _admin: AdminUser) -> ModelRead:
    model = service.register_model(session=session, data=body)
    session.commit()
    return service.to_read(model)


@api.get("/{model_id}", response_model=ModelRead, summary="One model version (admin)")
def get_model(model_id: int, session: SessionDep, _admin: AdminReader) -> ModelRead:
    return service.to_read(service.get_model(session=session, model_id=model_id))


@api.post("/{model_id}/promote", response_model=ProjectRead,
          summary="Make a policy the project's current one (admin); queues sampling from it")
def promote(model_id: int, body: PromoteRequest, session: SessionDep, admin: AdminUser,
            settings: SettingsDep) -> ProjectRead:
    model = service.get_model(session=session, model_id=model_id)
    project = get_project(session=session, project_id=body.project_id, user=admin)
    service.promote(model=model, project=project)
    if body.sample:
        ensure_ready_tasks(session=session, project=project, target=settings.ready_tasks, created_by_id=admin.id)
    session.commit()
    return project_read(session, project)


# Pages.

# The figures the registry table shows when a model has them (trainers' final metrics).
HEADLINE_METRICS = ["eval/accuracy", "eval/rewards/accuracies", "eval/loss", "loss", "accuracy", "rewards/accuracies",
                    "pairs", "judgments"]


@pages.get("/models")
def models_page(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    models = service.list_models(session=session)
    projects = list_projects(session=session, user=admin)
    return render(request, "models/list.html", {
        "models": list(reversed(models)), "by_id": {m.id: m for m in models}, "headline": HEADLINE_METRICS,
        "projects": projects, "current": {p.current_policy_id: p for p in projects},
    })


@pages.post("/models/{model_id}/promote")
def promote_submit(model_id: int, session: SessionDep, admin: AdminUser, form: FormDep,
                   settings: SettingsDep) -> Response:
    project_id = form.get("project_id", "")
    if not isinstance(project_id, str) or not project_id.isdecimal():
        raise Invalid("choose the project whose policy this model becomes", code="invalid_form")
    model = service.get_model(session=session, model_id=model_id)
    project = get_project(session=session, project_id=int(project_id), user=admin)
    service.promote(model=model, project=project)
    if form.get("sample") == "on":
        ensure_ready_tasks(session=session, project=project, target=settings.ready_tasks, created_by_id=admin.id)
    session.commit()
    return RedirectResponse(f"/projects/{project.id}#sampling-heading", status_code=303)
