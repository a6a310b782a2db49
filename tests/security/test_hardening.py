"""Hardened defaults: the login rate limit, Secure cookies on https, security headers, token scopes."""

import socket
import threading
import time
from datetime import timedelta

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.cli import proxy_options
from app.config import Settings
from app.main import create_app
from app.users.models import ApiToken, LoginFailure, Scope
from tests.factories import PASSWORD, bearer, csrf_from, make_admin, make_token, make_user


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.login_max_failures = 3
    settings.login_max_failures_per_address = 5
    settings.login_window_seconds = 600
    return settings


def _try(client: TestClient, username: str, password: str):
    token = csrf_from(client.get("/login").text)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       follow_redirects=False)


def _failures(db, key: str) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(LoginFailure).where(LoginFailure.key == key))


def test_login_is_limited_per_username_with_retry_after(client, db):
    make_user(db, username="alice")
    assert [_try(client, "alice", "wrong-password").status_code for _ in range(3)] == [401, 401, 401]
    assert _failures(db, "user:alice") == 3 and _failures(db, "addr:testclient") == 3

    limited = _try(client, "ALICE", PASSWORD)  # the right password no longer helps, in any letter case
    assert limited.status_code == 429
    assert 590 <= int(limited.headers["retry-after"]) <= 600
    assert "Too many failed logins. Try again in 10 minutes." in limited.text
    assert client.get("/api/v1/me").status_code == 401
    assert _failures(db, "user:alice") == 3  # refused before the password is checked: nothing counted

    make_user(db, username="bob")
    assert _try(client, "bob", PASSWORD).status_code == 303  # other accounts are not locked


def test_limit_holds_across_web_processes(app, client, db):
    # A second application on the same database stands in for a second uvicorn worker.
    make_user(db, username="carol")
    for _ in range(3):
        _try(client, "carol", "wrong-password")
    other = create_app(app.state.settings)
    other.dependency_overrides.update(app.dependency_overrides)
    with TestClient(other) as second:
        assert _try(second, "carol", PASSWORD).status_code == 429
    other.state.engine.dispose()


def test_login_is_limited_per_address(client, db):
    make_user(db, username="dave")
    for name in ("u1", "u2", "u3", "u4", "u5"):
        assert _try(client, name, "wrong-password").status_code == 401
    response = _try(client, "dave", PASSWORD)
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0


def test_success_clears_the_username_and_the_window_expires(client, db):
    make_user(db, username="erin")
    for _ in range(2):
        _try(client, "erin", "wrong-password")
    assert _try(client, "erin", PASSWORD).status_code == 303
    assert _failures(db, "user:erin") == 0
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/account").text)})

    for _ in range(3):
        _try(client, "erin", "wrong-password")
    assert _try(client, "erin", PASSWORD).status_code == 429
    # Move the failures out of the window: the next attempt is allowed, and stale rows are purged.
    db.expire_all()
    for failure in db.scalars(select(LoginFailure)):
        failure.at -= timedelta(seconds=601)
    db.commit()
    assert _try(client, "erin", "wrong-password").status_code == 401
    assert _failures(db, "user:erin") == 1


def test_session_cookie_flags(app, settings):
    with TestClient(app) as plain:
        response = plain.get("/login")
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        assert "strict-transport-security" not in response.headers
    with TestClient(app, base_url="https://testserver") as https:
        response = https.get("/login")
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and cookie.endswith("; secure")
        assert response.headers["strict-transport-security"] == "max-age=31536000"
    settings.secure_cookies = True
    forced = create_app(settings)
    with TestClient(forced) as plain:
        assert plain.get("/login").headers["set-cookie"].lower().endswith("; secure")
    forced.state.engine.dispose()


def _serve_once(app, settings: Settings, headers: dict[str, str]) -> httpx.Response:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          **proxy_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        return httpx.get(f"http://127.0.0.1:{port}/login", headers=headers)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_forwarded_proto_is_believed_only_from_a_configured_proxy(app, settings):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    assert "secure" not in _serve_once(app, settings, forwarded).headers["set-cookie"].lower()
    settings.trusted_proxies = "127.0.0.1"
    assert _serve_once(app, settings, forwarded).headers["set-cookie"].lower().endswith("; secure")


@pytest.mark.parametrize("path", ["/login", "/api/v1/me", "/healthz", "/static/css/app.css", "/no-such-page"])
def test_every_response_has_the_security_headers(client, path):
    headers = client.get(path).headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


def test_templates_have_no_inline_script_or_handlers():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    for page in root.rglob("*.html"):
        text = page.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"{page.name}: inline <script>"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{page.name}: inline event handler"
        assert "javascript:" not in text, f"{page.name}: javascript: URL"


def test_a_token_never_mints_a_broader_token(client, db):
    labeler = make_user(db)
    admin = make_admin(db)
    for owner, scope, wanted in ((labeler, Scope.read, "label"), (admin, Scope.read, "admin"),
                                 (admin, Scope.label, "admin")):
        before = db.scalar(select(func.count()).select_from(ApiToken))
        response = client.post("/api/v1/tokens", json={"name": "x", "scope": wanted},
                               headers=bearer(make_token(db, owner, scope)))
        assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
        assert db.scalar(select(func.count()).select_from(ApiToken)) == before + 1  # only make_token's
    same = client.post("/api/v1/tokens", json={"name": "x", "scope": "read"},
                       headers=bearer(make_token(db, labeler, Scope.read)))
    assert same.status_code == 201


def test_guessing_the_current_password_is_limited_too(client, db):
    # A stolen session or token must not become a way to find out the password itself.
    user = make_user(db, username="frank")
    headers = bearer(make_token(db, user, Scope.label))
    body = {"current_password": "wrong-password", "new_password": "a-new-password-1"}
    assert [client.put("/api/v1/me/password", json=body, headers=headers).status_code for _ in range(3)] == [422] * 3
    assert _failures(db, "user:frank") == 3
    limited = client.put("/api/v1/me/password", json={**body, "current_password": PASSWORD}, headers=headers)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "too_many_attempts"
    assert 590 <= int(limited.headers["retry-after"]) <= 600
    assert _try(client, "frank", PASSWORD).status_code == 429  # the form login shares the count
    page = client.post("/account/password", data={**body, "current_password": PASSWORD}, headers=headers)
    assert page.status_code == 429 and "Too many failed logins" in page.text and page.headers["retry-after"]
    db.expire_all()
    from app.users.service import authenticate

    assert authenticate(session=db, username="frank", password=PASSWORD) is not None  # unchanged
