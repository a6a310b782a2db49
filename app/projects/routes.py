"""Projects: /api/v1/projects and the project pages."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from app.db import get_by_id, next_cursor
from app.deps import AdminUser, CurrentUser, CursorQuery, FormDep, SessionDep, SettingsDep
from app.errors import DomainError, Invalid, describe_validation_errors
from app.pages import render
from app.projects import service
from app.projects.models import Project
from app.projects.schemas import (
    Flag, LikertScale, ProjectCreate, ProjectList, ProjectRead, ProjectUpdate, RatingSchema, SamplingParams,
)
from app.jobs.service import recent_jobs
from app.labeling.service import ensure_ready_tasks
from app.models.models import ModelVersion
from app.prompts.service import recent_prompts
from app.users.models import Role
from app.users.service import list_users

api = APIRouter(prefix="/projects", tags=["projects"])
pages = APIRouter(include_in_schema=False)


def project_read(session: SessionDep, project: Project) -> ProjectRead:
    return service.to_read(project, service.prompt_counts(session=session, project_ids=[project.id])[project.id])


@api.post("", response_model=ProjectRead, status_code=201, summary="Create a project (admin)")
def create_project(body: ProjectCreate, session: SessionDep, admin: AdminUser) -> ProjectRead:
    project = service.create_project(session=session, data=body, creator=admin)
    session.commit()
    return project_read(session, project)


@api.get("", response_model=ProjectList, summary="Projects you may see (admins: all), newest first, by cursor")
def list_projects(session: SessionDep, user: CurrentUser, cursor: CursorQuery = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ProjectList:
    projects = service.list_projects(session=session, user=user, before_id=cursor, limit=limit)
    counts = service.prompt_counts(session=session, project_ids=[p.id for p in projects])
    return ProjectList(items=[service.to_read(p, counts[p.id]) for p in projects],
                       next_cursor=next_cursor(projects, limit))


@api.get("/{project_id}", response_model=ProjectRead, summary="One project")
def get_project(project_id: int, session: SessionDep, user: CurrentUser) -> ProjectRead:
    return project_read(session, service.get_project(session=session, project_id=project_id, user=user))


@api.patch("/{project_id}", response_model=ProjectRead, summary="Change a project's settings (admin)")
def update_project(project_id: int, body: ProjectUpdate, session: SessionDep, admin: AdminUser) -> ProjectRead:
    project = service.get_project(session=session, project_id=project_id, user=admin)
    service.update_project(session=session, project=project, data=body)
    session.commit()
    return project_read(session, project)


# Pages.

def _flags_text(schema: dict[str, Any]) -> str:
    return "\n".join(f"{f['key']}: {f['label']}" for f in schema.get("flags", []))


def _parse_flags(text: str) -> list[Flag]:
    flags = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, label = line.partition(":")
        if not sep:
            raise Invalid(f"flags line {number}: write it as 'key: Label'", code="invalid_flags")
        flags.append(Flag.model_construct(key=key.strip(), label=label.strip()))
    return flags


def _form_values(project: Project | None) -> dict[str, Any]:
    defaults = ProjectCreate(name="x")
    schema = project.rating_schema if project else defaults.rating_schema.model_dump()
    sampling = project.sampling_params if project else defaults.sampling_params.model_dump()
    return {
        "name": project.name if project else "",
        "description": project.description if project else "",
        "k": project.k if project else defaults.k,
        "labels_per_task": project.labels_per_task if project else defaults.labels_per_task,
        "allow_ties": project.allow_ties if project else defaults.allow_ties,
        "likert_label": schema["likert"]["label"],
        "flags_text": _flags_text(schema),
        "guidelines": project.guidelines if project else "",
        "temperature": sampling["temperature"], "top_p": sampling["top_p"],
        "max_new_tokens": sampling["max_new_tokens"],
        "near_duplicate_prefix": (project.near_duplicate_prefix or "") if project else "",
        "labeler_ids": {m.user_id for m in project.members} if project else set(),
    }


def _submitted_values(form: FormData) -> dict[str, Any]:
    values = {key: form.get(key, "") for key in (
        "name", "description", "k", "labels_per_task", "likert_label", "flags_text", "guidelines",
        "temperature", "top_p", "max_new_tokens", "near_duplicate_prefix")}
    values["allow_ties"] = form.get("allow_ties") == "on"
    values["labeler_ids"] = {int(v) for v in form.getlist("labeler_ids") if isinstance(v, str) and v.isdecimal()}
    return values


def _to_payload(values: dict[str, Any], likert_base: dict[str, Any],
                sampling_base: dict[str, Any]) -> dict[str, Any]:
    """The form's strings as a ProjectCreate/Update body (pydantic does the checking).

    Best-of-N settings are not on the form (they are set over the API) and are kept as they are.
    """
    likert = LikertScale.model_validate({**likert_base, "label": values["likert_label"]})
    schema = RatingSchema.model_validate({"likert": likert.model_dump(),
                                          "flags": [f.model_dump() for f in _parse_flags(values["flags_text"])]})
    sampling = SamplingParams.model_validate({
        **{k: sampling_base.get(k) for k in ("best_of", "reward_model_id")},
        **{k: values[k] or None for k in ("temperature", "top_p", "max_new_tokens")}})
    return {
        "name": values["name"], "description": values["description"], "k": values["k"] or None,
        "labels_per_task": values["labels_per_task"] or None, "allow_ties": values["allow_ties"],
        "guidelines": values["guidelines"], "rating_schema": schema, "sampling_params": sampling,
        "near_duplicate_prefix": values["near_duplicate_prefix"] or None,
        "labeler_ids": sorted(values["labeler_ids"]),
    }


def _form_page(request: Request, session: SessionDep, admin, *, mode: str, action: str, values: dict[str, Any],
               error: str | None = None, details: Any = None, status_code: int = 200) -> Response:
    return render(request, "projects/form.html", {
        "user": admin, "mode": mode, "action": action, "form": values,
        "labelers": list_users(session=session, role=Role.labeler), "error": error, "details": details,
    }, status_code=status_code)


def _save_from_form(request: Request, session: SessionDep, admin, form: FormData, project: Project | None) -> Response:
    values = _submitted_values(form)
    mode, action = ("edit", f"/projects/{project.id}/edit") if project else ("create", "/projects/new")
    likert_base = project.rating_schema["likert"] if project else {}
    try:
        payload = _to_payload(values, likert_base, project.sampling_params if project else {})
        if project is None:
            project = service.create_project(session=session, data=ProjectCreate.model_validate(payload), creator=admin)
        else:
            service.update_project(session=session, project=project, data=ProjectUpdate.model_validate(payload))
    except ValidationError as exc:
        session.rollback()
        message, details = describe_validation_errors(list(exc.errors()))
        return _form_page(request, session, admin, mode=mode, action=action, values=values,
                          error=f"Please fix: {message}", details=details, status_code=422)
    except DomainError as exc:
        session.rollback()
        return _form_page(request, session, admin, mode=mode, action=action, values=values,
                          error=exc.message, details=exc.details, status_code=exc.status_code)
    session.commit()
    return RedirectResponse(f"/projects/{project.id}", status_code=303)


@pages.get("/")
def projects_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    projects = service.list_projects(session=session, user=user)
    counts = service.prompt_counts(session=session, project_ids=[p.id for p in projects])
    return render(request, "projects/list.html",
                  {"user": user, "projects": [{"project": p, "prompts": counts[p.id]} for p in projects]})


@pages.get("/projects/new")
def new_project_page(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    return _form_page(request, session, admin, mode="create", action="/projects/new", values=_form_values(None))


@pages.post("/projects/new")
def create_project_submit(request: Request, session: SessionDep, admin: AdminUser, form: FormDep) -> Response:
    return _save_from_form(request, session, admin, form, None)


@pages.get("/projects/{project_id}/edit")
def edit_project_page(project_id: int, request: Request, session: SessionDep, admin: AdminUser) -> Response:
    project = service.get_project(session=session, project_id=project_id, user=admin)
    return _form_page(request, session, admin, mode="edit", action=f"/projects/{project.id}/edit",
                      values=_form_values(project))


@pages.post("/projects/{project_id}/edit")
def edit_project_submit(project_id: int, request: Request, session: SessionDep, admin: AdminUser,
                        form: FormDep) -> Response:
    project = service.get_project(session=session, project_id=project_id, user=admin)
    return _save_from_form(request, session, admin, form, project)


def project_page(request: Request, session: SessionDep, user, project: Project, *,
                 import_result: Any = None, import_error: Any = None, status_code: int = 200) -> Response:
    """The project page; the prompt upload renders it too, with its outcome."""
    admin_only = {
        "policy": get_by_id(session, ModelVersion, project.current_policy_id) if project.current_policy_id else None,
        "jobs": recent_jobs(session=session, project_id=project.id),
        "ready_tasks": request.app.state.settings.ready_tasks,
    } if user.is_admin else {}
    return render(request, "projects/detail.html", {**admin_only,
        "user": user, "project": project, "members": service.members(session=session, project=project),
        "stats": service.project_stats(session=session, project=project),
        "recent_prompts": recent_prompts(session=session, project=project),
        "import_result": import_result, "import_error": import_error,
    }, status_code=status_code)


@pages.post("/projects/{project_id}/sample")
def sample_more(project_id: int, session: SessionDep, admin: AdminUser, form: FormDep,
                settings: SettingsDep) -> Response:
    project = service.get_project(session=session, project_id=project_id, user=admin)
    count = form.get("count", "")
    if not isinstance(count, str) or not count.isdecimal() or not 1 <= int(count) <= 10_000:
        raise Invalid("count must be a whole number from 1 to 10000", code="invalid_count")
    ensure_ready_tasks(session=session, project=project, target=settings.ready_tasks, extra=int(count),
                       created_by_id=admin.id)
    session.commit()
    return RedirectResponse(f"/projects/{project.id}#sampling-heading", status_code=303)


@pages.get("/projects/{project_id}")
def project_detail_page(project_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    project = service.get_project(session=session, project_id=project_id, user=user)
    return project_page(request, session, user, project)


