"""Plain factory functions for tests."""

import re
import uuid
from collections.abc import Callable

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.labeling.models import Task, TaskCompletion
from app.models.models import ModelRole, ModelVersion
from app.projects.models import Project
from app.projects.schemas import ProjectCreate
from app.projects.service import create_project
from app.prompts.models import Completion, Prompt
from app.users.models import Role, Scope, User
from app.users.service import create_token, create_user

PASSWORD = "correct-horse-battery"


def make_user(db: Session, role: Role = Role.labeler, username: str | None = None,
              password: str = PASSWORD) -> User:
    user = create_user(session=db, username=username or f"{role}-{uuid.uuid4().hex[:6]}", role=role,
                       password=password)
    db.commit()
    return user


def make_admin(db: Session, **kwargs) -> User:
    return make_user(db, Role.admin, **kwargs)


def make_project(db: Session, creator: User, **fields) -> Project:
    fields.setdefault("name", f"project-{uuid.uuid4().hex[:6]}")
    project = create_project(session=db, data=ProjectCreate(**fields), creator=creator)
    db.commit()
    return project


def make_tasks(db: Session, project, *, n: int, k: int, model: ModelVersion | None = None,
               prompt_text: Callable[[int], str] = "prompt {}".format,
               completion_text: Callable[[int, int], str] = "answer {}.{}".format) -> list[Task]:
    """n open tasks of k completions each, from one policy version (a new one unless `model` is given)."""
    if model is None:
        model = ModelVersion(role=ModelRole.policy, name="m", source="s", config={}, metrics={})
        db.add(model)
        db.flush()
    tasks = []
    for i in range(n):
        prompt = Prompt(project_id=project.id, kind="text", text=prompt_text(i), content_hash=f"h{i}", meta={})
        db.add(prompt)
        db.flush()
        task = Task(project_id=project.id, prompt_id=prompt.id, labels_needed=project.labels_per_task)
        db.add(task)
        db.flush()
        for position in range(k):
            completion = Completion(prompt_id=prompt.id, model_version_id=model.id, text=completion_text(i, position),
                                    text_hash=f"{i}.{position}", token_count=3, finish_reason="stop",
                                    sampling_params={}, seed=1)
            db.add(completion)
            db.flush()
            db.add(TaskCompletion(task_id=task.id, completion_id=completion.id, position=position))
        tasks.append(task)
    db.commit()
    return tasks


def make_token(db: Session, user: User, scope: Scope = Scope.read) -> str:
    _token, plain = create_token(session=db, user=user, name="test", scope=scope)
    db.commit()
    return plain


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def login(client: TestClient, user: User, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = csrf_from(client.get("/login").text)
    response = client.post("/login", data={"username": user.username, "password": password, "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/account").text)


def api_routes(app) -> list[tuple[str, str, APIRoute]]:
    """Every (method, full path, route) the app serves, included routers flattened."""
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.route, APIRoute):
            found.extend((method, context.path, context.route) for method in sorted(context.methods - {"HEAD"}))
    return found
