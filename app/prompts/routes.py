"""Prompt import and listing: /api/v1/projects/{id}/prompts and the upload form."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.db import next_cursor
from app.deps import AdminUser, CurrentUser, CursorQuery, FormDep, SessionDep, SettingsDep
from app.errors import DomainError, Invalid
from app.labeling.service import ensure_ready_tasks
from app.projects.routes import project_page
from app.projects.service import get_project
from app.prompts import service
from app.prompts.models import PromptKind
from app.prompts.schemas import ImportResult, PromptList, PromptRead

api = APIRouter(prefix="/projects/{project_id}/prompts", tags=["prompts"])
pages = APIRouter(include_in_schema=False)

UPLOAD_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".txt")
IMPORT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "A JSON array of prompt objects, JSONL (one object a line) or CSV with a `prompt` "
                       "column. Objects: `{\"prompt\": \"...\"}` or `{\"messages\": [{\"role\": \"user\", "
                       "\"content\": \"...\"}]}`, optional `id`, `user` and `meta`.",
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@api.post("", response_model=ImportResult, status_code=201, openapi_extra=IMPORT_BODY_DOC,
          summary="Import prompts (admin); all or nothing, duplicates skipped and counted")
async def import_prompts(project_id: int, request: Request, session: SessionDep, admin: AdminUser,
                         settings: SettingsDep, format: Annotated[str | None, Query(pattern="^(jsonl|json|csv)$")] = None) -> ImportResult:
    data = await request.body()
    # Parsing and inserting are blocking work: run them off the event loop.
    return await run_in_threadpool(_import_body, project_id, data, request.headers.get("content-type"), format,
                                   session, admin, settings.ready_tasks)


def _import_body(project_id: int, data: bytes, content_type: str | None, fmt: str | None, session, admin,
                 ready_tasks: int) -> ImportResult:
    project = get_project(session=session, project_id=project_id, user=admin)
    items = service.parse_prompt_file(data, fmt or service.detect_format(None, content_type, data))
    result = service.import_prompts(session=session, project=project, items=items, source="api", creator=admin)
    ensure_ready_tasks(session=session, project=project, target=ready_tasks)
    session.commit()
    return result


@api.get("", response_model=PromptList, summary="A project's prompts, oldest first, by cursor")
def list_prompts(project_id: int, session: SessionDep, user: CurrentUser, cursor: CursorQuery = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 kind: PromptKind | None = None,
                 source_user: Annotated[str | None, Query(max_length=200, description="who wrote the prompt")] = None,
                 external_id: Annotated[str | None, Query(max_length=200, description="your id of the prompt")] = None,
                 ) -> PromptList:
    project = get_project(session=session, project_id=project_id, user=user)
    prompts = service.list_prompts(session=session, project=project, after_id=cursor, limit=limit, kind=kind,
                                   source_user=source_user, external_id=external_id)
    return PromptList(items=[PromptRead.model_validate(p) for p in prompts], next_cursor=next_cursor(prompts, limit))


@pages.post("/projects/{project_id}/prompts/upload")
def upload_prompts(project_id: int, request: Request, session: SessionDep, admin: AdminUser,
                   form: FormDep, settings: SettingsDep) -> Response:
    project = get_project(session=session, project_id=project_id, user=admin)
    upload = form.get("file")
    try:
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise Invalid("choose a file to upload", code="no_file")
        if not upload.filename.lower().endswith(UPLOAD_SUFFIXES):
            raise Invalid(f"{upload.filename!r} is not a prompt file; upload .jsonl, .json or .csv",
                          code="unsupported_file_type")
        data = upload.file.read()
        items = service.parse_prompt_file(data, service.detect_format(upload.filename, upload.content_type, data))
        result = service.import_prompts(session=session, project=project, items=items,
                                        source=f"upload:{upload.filename}", creator=admin)
        ensure_ready_tasks(session=session, project=project, target=settings.ready_tasks)
    except DomainError as exc:
        session.rollback()
        return project_page(request, session, admin, project, status_code=exc.status_code,
                            import_error={"message": exc.message, "details": exc.details or []})
    session.commit()
    return project_page(request, session, admin, project, import_result=result.model_dump())
