"""Tasks: /api/v1/projects/{id}/tasks."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.db import MAX_ROW_ID
from app.deps import AdminReader, SessionDep
from app.labeling import service
from app.labeling.models import TaskState
from app.labeling.schemas import CompletionRead, TaskList, TaskRead
from app.projects.service import get_project

api = APIRouter(prefix="/projects/{project_id}/tasks", tags=["tasks"])


@api.get("", response_model=TaskList, summary="Tasks with their completions and state (admin), by cursor")
def list_tasks(project_id: int, session: SessionDep, admin: AdminReader,
               state: Annotated[TaskState | None, Query()] = None,
               cursor: Annotated[int | None, Query(ge=0, le=MAX_ROW_ID)] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> TaskList:
    project = get_project(session=session, project_id=project_id, user=admin)
    rows = service.list_tasks(session=session, project=project, state=state, after_id=cursor, limit=limit)
    items = [TaskRead(id=t.id, prompt_id=t.prompt_id, state=t.state, labels_needed=t.labels_needed,
                      labels_done=t.labels_done, created_at=t.created_at,
                      completions=[CompletionRead.model_validate(c) for c in completions])
             for t, completions in rows]
    return TaskList(items=items, next_cursor=items[-1].id if len(items) == limit else None)
