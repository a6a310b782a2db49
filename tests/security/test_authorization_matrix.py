"""Every route × every kind of caller: the status each gets, and a denied request changes nothing.

A route without a row here fails test_every_route_has_a_row; adding one is a single line in MATRIX.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from tests.factories import api_routes
from tests.security.world import PRINCIPALS, World, build_world, dump, principal_headers

# Who is turned away, and with what, for each kind of access (everyone not named gets the row's status).
USER = {"anon": 401, "revoked": 401}                                   # anyone logged in, any token scope
LABEL = USER | {"read": 403, "admin_read": 403}                        # needs the `label` scope
ADMIN_READ = USER | {"member": 403, "outsider": 403, "read": 403, "label": 403}  # admins, any scope
ADMIN = ADMIN_READ | {"admin_read": 403}                               # admins with the `admin` scope
MEMBER = USER | {"outsider": 404}                                      # project A's members and admins
MEMBER_LABEL = LABEL | {"outsider": 404}                               # ... labeling in it
OWN = USER | {"outsider": 404, "admin": 404, "admin_token": 404, "admin_read": 404}  # the member's own things
OWN_LABEL = LABEL | {"outsider": 404, "admin": 404, "admin_token": 404}  # ... changed with the `label` scope
ANYONE: dict[str, int] = {}
SIGNED_IN = {p: 303 for p in PRINCIPALS if p != "anon"}                # GET /login sends them on


@dataclass(frozen=True)
class Row:
    """What a request to one route gets: `ok` unless `others` names the caller."""

    ok: int
    others: dict[str, int]
    json: Callable[[World], Any] | Any = None
    form: Callable[[World], dict[str, Any]] | dict[str, Any] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    ids: dict[str, str] = field(default_factory=dict)   # path parameter -> World.ids key, beyond DEFAULT_IDS
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)


DEFAULT_IDS = {"project_id": "project_a", "task_id": "task_a", "judgment_id": "judgment_a", "user_id": "member",
               "token_id": "token", "job_id": "job_a", "model_id": "model", "snapshot_id": "snapshot_a",
               "assignment_id": "lease_heartbeat_a"}
KEY = {"Idempotency-Key": "matrix-1"}
PROJECT_FORM = {"name": "page project", "k": "3", "labels_per_task": "1", "likert_label": "Overall quality",
                "temperature": "0.7", "top_p": "0.9", "max_new_tokens": "64"}


def _ranks(task: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"ranks": w.ranks(task)}


# Run in this order, one fresh database per caller; POST /logout stays last (it ends the session).
MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(200, ANYONE),
    ("GET", "/openapi.json"): Row(200, ANYONE),
    ("GET", "/api/docs"): Row(200, ANYONE),
    ("GET", "/static/{path}"): Row(200, ANYONE, ids={"path": "css/app.css"}),
    ("GET", "/login"): Row(200, SIGNED_IN),
    ("POST", "/login"): Row(401, ANYONE, form={"username": "nobody", "password": "wrong-password"}),
    ("GET", "/api/v1/me"): Row(200, USER),
    ("PUT", "/api/v1/me/password"): Row(422, LABEL, json={"current_password": "wrong", "new_password": "x" * 12}),
    ("GET", "/api/v1/users"): Row(200, ADMIN_READ),
    ("POST", "/api/v1/users"): Row(201, ADMIN, json={"username": "newbie", "password": "long-enough-1"}),
    ("GET", "/api/v1/tokens"): Row(200, USER),
    ("POST", "/api/v1/tokens"): Row(201, USER, json={"name": "t", "scope": "read"}),
    ("POST", "/api/v1/tokens/{token_id}/revoke"): Row(200, OWN),
    ("POST", "/api/v1/projects"): Row(201, ADMIN, json={"name": "new project"}),
    ("GET", "/api/v1/projects"): Row(200, USER),
    ("GET", "/api/v1/projects/{project_id}"): Row(200, MEMBER),
    ("PATCH", "/api/v1/projects/{project_id}"): Row(200, ADMIN, json={"description": "changed"}),
    ("POST", "/api/v1/projects/{project_id}/prompts"): Row(201, ADMIN, json=[{"prompt": "a new prompt"}]),
    ("GET", "/api/v1/projects/{project_id}/prompts"): Row(200, MEMBER),
    ("GET", "/api/v1/projects/{project_id}/tasks"): Row(200, ADMIN_READ),
    ("POST", "/api/v1/projects/{project_id}/assignments"): Row(201, MEMBER_LABEL),
    ("POST", "/api/v1/assignments/{assignment_id}/judgment"): Row(
        201, OWN_LABEL, json=_ranks("lease_submit_a"), ids={"assignment_id": "lease_submit_a"}, headers=KEY),
    ("GET", "/api/v1/judgments"): Row(200, MEMBER, query="?project_id={project_a}"),
    ("GET", "/api/v1/projects/{project_id}/judgments"): Row(200, ADMIN_READ),
    ("GET", "/api/v1/projects/{project_id}/comparisons"): Row(200, ADMIN_READ),
    ("GET", "/api/v1/judgments/{judgment_id}"): Row(200, OWN),
    ("PUT", "/api/v1/judgments/{judgment_id}"): Row(200, OWN_LABEL, json=_ranks("task_a"),
                                                    headers={"Idempotency-Key": "matrix-2"}),
    ("POST", "/api/v1/assignments/{assignment_id}/heartbeat"): Row(200, OWN_LABEL),
    ("POST", "/api/v1/assignments/{assignment_id}/skip"): Row(204, OWN_LABEL, json={"reason": "unclear"},
                                                             ids={"assignment_id": "lease_skip_a"}),
    ("POST", "/api/v1/jobs"): Row(201, ADMIN, json=lambda w: {"kind": "sample", "project_id": w.ids["project_a"],
                                                              "params": {"prompt_ids": [w.ids["prompt_a"]]}}),
    ("GET", "/api/v1/jobs"): Row(200, ADMIN_READ),
    ("GET", "/api/v1/jobs/{job_id}"): Row(200, ADMIN_READ),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): Row(200, ADMIN),
    ("GET", "/api/v1/models"): Row(200, ADMIN_READ),
    ("POST", "/api/v1/models"): Row(201, ADMIN, json={"name": "remote", "backend": "openai",
                                                      "base_url": "http://vllm:8000/v1", "model": "m"}),
    ("GET", "/api/v1/models/{model_id}"): Row(200, ADMIN_READ),
    ("POST", "/api/v1/models/{model_id}/promote"): Row(200, ADMIN, json=lambda w: {"project_id": w.ids["project_a"]}),
    ("GET", "/api/v1/projects/{project_id}/agreement"): Row(200, ADMIN_READ),
    ("GET", "/api/v1/projects/{project_id}/review-queue"): Row(200, ADMIN_READ),
    ("GET", "/api/v1/tasks/{task_id}/review"): Row(200, ADMIN_READ),
    ("POST", "/api/v1/judgments/{judgment_id}/exclude"): Row(200, ADMIN, json={"reason": "noise"}),
    ("POST", "/api/v1/judgments/{judgment_id}/include"): Row(200, ADMIN, json={}),
    ("POST", "/api/v1/projects/{project_id}/labelers/{user_id}/exclude"): Row(200, ADMIN, json={"reason": "noise"}),
    ("POST", "/api/v1/projects/{project_id}/labelers/{user_id}/include"): Row(200, ADMIN, json={}),
    ("POST", "/api/v1/tasks/{task_id}/reopen"): Row(200, ADMIN, json={"extra_labels": 1}),
    ("PUT", "/api/v1/tasks/{task_id}/gold"): Row(200, ADMIN, json=_ranks("task_a")),
    ("DELETE", "/api/v1/tasks/{task_id}/gold"): Row(200, ADMIN),
    ("GET", "/api/v1/projects/{project_id}/export"): Row(200, ADMIN_READ, query="?format=pairs"),
    ("POST", "/api/v1/projects/{project_id}/snapshots"): Row(201, ADMIN, json={}),
    ("GET", "/api/v1/projects/{project_id}/snapshots"): Row(200, ADMIN_READ),
    ("GET", "/api/v1/snapshots/{snapshot_id}"): Row(200, ADMIN_READ),
    ("GET", "/api/v1/snapshots/{snapshot_id}/download"): Row(200, ADMIN_READ),
    ("GET", "/"): Row(200, USER),
    ("GET", "/projects/new"): Row(200, ADMIN),
    ("POST", "/projects/new"): Row(303, ADMIN, form=PROJECT_FORM),
    ("GET", "/projects/{project_id}/edit"): Row(200, ADMIN),
    ("POST", "/projects/{project_id}/edit"): Row(303, ADMIN, form=lambda w: {
        **PROJECT_FORM, "name": "project-a", "labeler_ids": [str(w.ids["member"])]}),
    ("POST", "/projects/{project_id}/sample"): Row(303, ADMIN, form={"count": "1"}),
    ("GET", "/projects/{project_id}"): Row(200, MEMBER),
    ("POST", "/projects/{project_id}/prompts/upload"): Row(
        200, ADMIN, files={"file": ("p.jsonl", b'{"prompt": "uploaded"}\n', "application/x-ndjson")}),
    ("GET", "/projects/{project_id}/label"): Row(200, MEMBER),
    ("GET", "/projects/{project_id}/review"): Row(200, ADMIN),
    ("GET", "/projects/{project_id}/review/queue"): Row(200, ADMIN),
    ("GET", "/tasks/{task_id}/review"): Row(200, ADMIN),
    ("POST", "/judgments/{judgment_id}/review/exclude"): Row(303, ADMIN, form={"reason": "noise"}),
    ("POST", "/judgments/{judgment_id}/review/include"): Row(303, ADMIN, form={}),
    ("POST", "/projects/{project_id}/review/labelers/{user_id}/exclude"): Row(303, ADMIN, form={"reason": "noise"}),
    ("POST", "/projects/{project_id}/review/labelers/{user_id}/include"): Row(303, ADMIN, form={}),
    ("POST", "/tasks/{task_id}/review/reopen"): Row(303, ADMIN, form={"extra_labels": "1"}),
    ("POST", "/tasks/{task_id}/review/gold"): Row(303, ADMIN, form=lambda w: {
        f"rank-{cid}": str(rank) for cid, rank in w.ranks("task_a").items()}),
    ("POST", "/tasks/{task_id}/review/gold/clear"): Row(303, ADMIN, form={}),
    ("POST", "/projects/{project_id}/review/gold-rate"): Row(303, ADMIN, form={"gold_rate": "10"}),
    ("GET", "/jobs/{job_id}"): Row(200, ADMIN),
    ("POST", "/jobs/{job_id}/cancel"): Row(303, ADMIN, form={}, ids={"job_id": "job_b"}),  # the API row cancels job_a
    ("GET", "/models"): Row(200, ADMIN),
    ("POST", "/models/{model_id}/promote"): Row(303, ADMIN, form=lambda w: {"project_id": str(w.ids["project_a"])}),
    ("GET", "/account"): Row(200, USER),
    ("POST", "/account/tokens"): Row(201, USER, form={"name": "page token", "scope": "read"}),
    ("POST", "/account/tokens/{token_id}/revoke"): Row(303, OWN, form={}),
    ("POST", "/account/password"): Row(422, USER, form={"current_password": "wrong", "new_password": "x" * 12}),
    ("GET", "/admin/users"): Row(200, ADMIN),
    ("POST", "/admin/users"): Row(201, ADMIN, form={"username": "pageuser", "role": "labeler"}),
    ("POST", "/logout"): Row(303, ANYONE, form={}),
}


def served_routes(app) -> set[tuple[str, str]]:
    """Every (method, path) the application answers: API routes, pages, OpenAPI, docs and static files."""
    found = {(method, path) for method, path, _route in api_routes(app)}
    for route in app.routes:
        if isinstance(route, Mount):
            found.add(("GET", route.path + "/{path}"))
        elif isinstance(route, Route) and not isinstance(route, APIRoute):
            found.update((m, route.path) for m in route.methods - {"HEAD"})
    return found


def test_every_route_has_a_row(app):
    served = served_routes(app)
    assert len(served) >= 75
    assert sorted(served - MATRIX.keys()) == [], "routes without a row in MATRIX: add one"
    assert sorted(MATRIX.keys() - served) == [], "rows for routes that no longer exist"


def test_openapi_paths_are_all_in_the_matrix(client):
    spec = client.get("/openapi.json").json()
    documented = {(m.upper(), path) for path, item in spec["paths"].items() for m in item}
    assert documented and documented <= MATRIX.keys()


def _url(path: str, row: Row, world: World) -> str:
    ids = {**DEFAULT_IDS, **row.ids}
    filled = path
    for name, key in ids.items():
        filled = filled.replace("{" + name + "}", str(world.ids.get(key, key)))
    assert "{" not in filled, f"no id for a parameter of {path}"
    return filled + row.query.format(**world.ids)


def expected(path: str, row: Row, principal: str) -> int:
    status = row.others.get(principal, row.ok)
    if principal in row.others and status == 401 and not path.startswith("/api/"):
        return 303  # a page sends whoever is not logged in to the login form
    return status


def _denied(path: str, row: Row, principal: str, response) -> bool:
    if principal not in row.others or response.status_code < 300:
        return False
    return response.status_code >= 400 or response.headers.get("location", "").startswith("/login")


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_authorization_matrix(client, db, settings, principal):
    world = build_world(db, settings)
    headers = principal_headers(client, db, world, principal)
    before = dump(db)
    wrong, writes = [], 0
    for (method, path), row in MATRIX.items():
        url = _url(path, row, world)
        body = row.json(world) if callable(row.json) else row.json
        form = row.form(world) if callable(row.form) else row.form
        response = client.request(method, url, headers={**headers, **row.headers}, json=body, data=form,
                                  files=row.files, follow_redirects=False)
        want = expected(path, row, principal)
        if response.status_code != want:
            wrong.append(f"{method} {path}: {response.status_code}, expected {want}: {response.text[:200]}")
        after = dump(db)
        if (_denied(path, row, principal, response) or method == "GET") and after != before:
            # A GET never changes anything either: CSRF protection covers only the other methods.
            changed = sorted(t for t in after if after[t] != before[t])
            wrong.append(f"{method} {path} answered {response.status_code} but changed {changed}")
        if want == 303 and row.others.get(principal) == 401:
            assert response.headers["location"].startswith("/login?next=")
        writes += after != before
        before = after
    assert wrong == [], f"{principal}:\n" + "\n".join(wrong)
    if principal in ("admin", "admin_token"):
        assert writes >= 25  # the dump sees what allowed requests change, so an unchanged dump means something


@pytest.mark.parametrize("principal", ["admin", "member"])
def test_every_state_change_by_cookie_needs_the_csrf_token(client, db, settings, principal):
    world = build_world(db, settings)
    principal_headers(client, db, world, principal)  # logged in; its CSRF token is not sent
    before = dump(db)
    unsafe = [(method, path) for method, path in MATRIX if method not in ("GET", "HEAD")]
    assert len(unsafe) >= 40
    for method, path in unsafe:
        row = MATRIX[(method, path)]
        body = row.json(world) if callable(row.json) else row.json
        form = row.form(world) if callable(row.form) else row.form
        response = client.request(method, _url(path, row, world), headers=row.headers, json=body, data=form,
                                  files=row.files, follow_redirects=False)
        assert response.status_code == 403, (method, path, response.status_code)
        assert "CSRF" in response.text, (method, path)
    assert dump(db) == before
    assert client.get("/api/v1/me").status_code == 200  # still logged in: the refusals were about CSRF
