"""Login, logout, CSRF, roles and API tokens."""

import re

import pytest
from bs4 import BeautifulSoup
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from app.db import Base
from app.deps import admin_reader, admin_user
from app.projects.models import Project
from app.users.models import ApiToken, Role, Scope
from tests.factories import PASSWORD, api_routes, bearer, csrf_from, login, make_admin, make_project, make_token, make_user


def _row_counts(db) -> dict[str, int]:
    db.expire_all()
    return {name: db.scalar(select(func.count()).select_from(table)) for name, table in Base.metadata.tables.items()}


def test_login_then_logout(client, db):
    admin = make_admin(db, username="ada")
    csrf = login(client, admin)
    home = BeautifulSoup(client.get("/").text, "html.parser")
    assert "ada" in home.select_one("nav").get_text()

    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    after = client.get("/", follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_set_cookie_is_httponly_and_samesite(client):
    response = client.get("/login")
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header


def test_wrong_password_is_refused_without_a_session(client, db):
    admin = make_admin(db, username="grace")
    token = csrf_from(client.get("/login").text)
    response = client.post("/login", data={"username": "grace", "password": "wrong-password", "csrf_token": token})
    assert response.status_code == 401
    alert = BeautifulSoup(response.text, "html.parser").select_one("[role=alert]")
    assert "Wrong username or password" in alert.get_text()
    assert client.get("/api/v1/me").status_code == 401
    db.refresh(admin)
    assert admin.last_login_at is None


def test_login_needs_the_csrf_token(client, db):
    make_admin(db, username="linus")
    client.get("/login")
    response = client.post("/login", data={"username": "linus", "password": PASSWORD})
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert client.get("/api/v1/me").status_code == 401


def test_state_change_without_csrf_is_403_and_writes_nothing(client, db):
    admin = make_admin(db)
    csrf = login(client, admin)
    before = _row_counts(db)

    page = client.post("/projects/new", data={"name": "sneaky", "k": "4", "labels_per_task": "1"})
    assert page.status_code == 403
    api = client.post("/api/v1/projects", json={"name": "sneaky"})
    assert api.status_code == 403 and api.json()["error"]["code"] == "csrf_failed"
    wrong = client.post("/api/v1/projects", json={"name": "sneaky"}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    tokens = client.post("/account/tokens", data={"name": "t", "scope": "read"})
    assert tokens.status_code == 403
    assert _row_counts(db) == before

    ok = client.post("/api/v1/projects", json={"name": "legit"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    db.expire_all()
    assert db.scalar(select(Project.name)) == "legit"


def _uses_admin(route: APIRoute) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call in (admin_user, admin_reader):
            return True
        stack.extend(dep.dependencies)
    return False


def _admin_routes(app) -> list[tuple[str, str]]:
    return sorted((method, path) for method, path, route in api_routes(app) if _uses_admin(route))


def test_admin_routes_are_found(app):
    routes = _admin_routes(app)
    # The walk must find the admin pages and API routes, or the next test would pass vacuously.
    assert ("POST", "/api/v1/projects") in routes
    assert ("GET", "/admin/users") in routes
    assert ("POST", "/projects/{project_id}/prompts/upload") in routes
    assert ("GET", "/api/v1/jobs/{job_id}") in routes and ("POST", "/api/v1/models/{model_id}/promote") in routes
    assert len(routes) >= 10


@pytest.mark.parametrize("credential", ["cookie", "label_token", "read_token"])
def test_labeler_gets_403_on_every_admin_route(client, app, db, credential):
    admin = make_admin(db)
    labeler = make_user(db, Role.labeler)
    project = make_project(db, admin, labeler_ids=[labeler.id])
    headers: dict[str, str] = {}
    if credential == "cookie":
        headers["X-CSRF-Token"] = login(client, labeler)
    else:
        headers.update(bearer(make_token(db, labeler, Scope.label if credential == "label_token" else Scope.read)))
    before = _row_counts(db)
    for method, path in _admin_routes(app):
        url = re.sub(r"\{\w+_id\}", "1", path.replace("{project_id}", str(project.id)))
        assert "{" not in url, f"fill the path parameters of {path}"
        response = client.request(method, url, headers=headers, json={"name": "x"} if path.startswith("/api") else None,
                                  data=None if path.startswith("/api") else {"csrf_token": headers.get("X-CSRF-Token", "")})
        assert response.status_code == 403, f"{method} {path} answered {response.status_code}"
        if path.startswith("/api"):
            assert response.json()["error"]["code"] in {"admin_only", "insufficient_scope"}
    assert _row_counts(db) == before


def test_admin_token_scopes(client, db):
    admin = make_admin(db)
    read = bearer(make_token(db, admin, Scope.read))
    full = bearer(make_token(db, admin, Scope.admin))
    assert client.get("/api/v1/projects", headers=read).status_code == 200
    denied = client.post("/api/v1/projects", json={"name": "p"}, headers=read)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_scope"
    assert client.post("/api/v1/projects", json={"name": "p"}, headers=full).status_code == 201


def test_wrong_malformed_and_revoked_tokens_get_401(client, db):
    labeler = make_user(db)
    plain = make_token(db, labeler, Scope.label)
    assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 200
    for headers in (bearer("pfl_not-a-real-token"), {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"

    token_id = db.scalar(select(ApiToken.id).where(ApiToken.user_id == labeler.id))
    revoked = client.post(f"/api/v1/tokens/{token_id}/revoke", headers=bearer(plain))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = client.get("/api/v1/me", headers=bearer(plain))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_token_created_in_the_ui_is_shown_once_and_stored_hashed(client, db):
    labeler = make_user(db)
    csrf = login(client, labeler)
    response = client.post("/account/tokens", data={"name": "laptop", "scope": "label", "csrf_token": csrf})
    assert response.status_code == 201
    plain = BeautifulSoup(response.text, "html.parser").select_one("#new-token").get_text().strip()
    assert plain.startswith("pfl_") and len(plain) > 40

    db.expire_all()
    token = db.scalar(select(ApiToken).where(ApiToken.user_id == labeler.id))
    assert token.name == "laptop" and token.scope == Scope.label
    assert plain not in (token.token_hash, token.prefix) and plain.startswith(token.prefix)
    assert token.last_used_at is None
    assert plain not in client.get("/account").text

    assert client.get("/api/v1/me", headers=bearer(plain)).json()["username"] == labeler.username
    db.expire_all()
    assert db.get(ApiToken, token.id).last_used_at is not None

    page = client.post(f"/account/tokens/{token.id}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert page.status_code == 303
    assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 401


def test_labeler_cannot_hold_an_admin_token(client, db):
    labeler = make_user(db)
    response = client.post("/api/v1/tokens", json={"name": "x", "scope": "admin"},
                           headers=bearer(make_token(db, labeler, Scope.label)))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_not_allowed"
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == labeler.id)) == 1


def test_token_api_shows_the_token_once(client, db):
    admin = make_admin(db)
    headers = bearer(make_token(db, admin, Scope.admin))
    created = client.post("/api/v1/tokens", json={"name": "ci", "scope": "read"}, headers=headers)
    assert created.status_code == 201
    plain = created.json()["token"]
    listed = client.get("/api/v1/tokens", headers=headers).json()["items"]
    assert {t["name"] for t in listed} == {"test", "ci"}
    assert all("token" not in t for t in listed)
    assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 200


def test_changing_the_password_ends_other_sessions(app, client, db):
    from fastapi.testclient import TestClient

    labeler = make_user(db)
    other = TestClient(app)
    login(other, labeler)
    csrf = login(client, labeler)
    response = client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "a-brand-new-secret", "csrf_token": csrf})
    assert response.status_code == 200
    assert "Password changed" in response.text
    assert client.get("/api/v1/me").status_code == 200
    assert other.get("/api/v1/me").status_code == 401


def test_forged_session_cookie_is_anonymous(client, db):
    make_admin(db)
    client.cookies.set("preflab_session", "eyJ1aWQiOiAxfQ==.forged.signature")
    assert client.get("/api/v1/me").status_code == 401


def test_admin_creates_a_labeler_in_the_ui(client, db):
    admin = make_admin(db)
    csrf = login(client, admin)
    response = client.post("/admin/users", data={"username": "newbie", "role": "labeler", "csrf_token": csrf})
    assert response.status_code == 201
    text = BeautifulSoup(response.text, "html.parser").get_text(" ")
    password = re.search(r"One-time password:\s*(\S+)", text).group(1)
    from app.users.service import authenticate

    db.expire_all()
    user = authenticate(session=db, username="newbie", password=password)
    assert user is not None and user.role == Role.labeler
    duplicate = client.post("/admin/users", data={"username": "NEWBIE", "role": "labeler", "csrf_token": csrf})
    assert duplicate.status_code == 409
