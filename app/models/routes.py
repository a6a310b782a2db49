"""The model registry: /api/v1/models."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.db import next_cursor
from app.deps import AdminReader, AdminUser, CursorQuery, SessionDep, SettingsDep
from app.labeling.service import ensure_ready_tasks
from app.models import service
from app.models.models import ModelRole
from app.models.schemas import ModelCreate, ModelList, ModelRead, PromoteRequest
from app.projects.routes import project_read
from app.projects.schemas import ProjectRead
from app.projects.service import get_project

api = APIRouter(prefix="/models", tags=["models"])


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
