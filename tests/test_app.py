"""Settings, the error shape, the HTML error page and what the web process imports."""

import gc
import stat
import subprocess
import sys

import pytest
from bs4 import BeautifulSoup

from app.config import InsecureSecret, Settings
from app.main import create_app
from tests.factories import bearer, login, make_admin, make_token


@pytest.mark.parametrize("secret", ["changeme", "secret", "short-but-not-sample"])
def test_refuses_to_start_with_a_sample_or_short_secret(tmp_path, secret):
    settings = Settings(data_dir=tmp_path, secret_key=secret)
    with pytest.raises(InsecureSecret, match="PREFLAB_SECRET_KEY"):
        create_app(settings)


def test_refuses_to_start_without_a_secret(tmp_path):
    with pytest.raises(InsecureSecret, match="missing"):
        create_app(Settings(data_dir=tmp_path))


def test_dev_mode_accepts_a_sample_secret(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, secret_key="changeme", dev=True))
    assert app.title == "Preflab"
    app.state.engine.dispose()


def test_secret_is_generated_once_and_kept_private(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = settings.ensure_secret_key()
    path = tmp_path / "data" / "secret_key"
    assert len(first) >= 32 and path.read_text() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path / "data").ensure_secret_key() == first


def test_settings_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PREFLAB_DATABASE_URL", "postgresql://u@db:5432/preflab")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db:5432/preflab"
    assert Settings(data_dir=tmp_path, database_url=None).sqlalchemy_url == f"sqlite:///{tmp_path / 'preflab.db'}"


def test_web_process_imports_no_torch_or_transformers():
    code = ("import sys, app.main, app.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Preflab"
    for path in ("/api/v1/projects", "/api/v1/projects/{project_id}", "/api/v1/projects/{project_id}/prompts",
                 "/api/v1/tokens", "/healthz"):
        assert path in spec["paths"], path
    assert not any(p.startswith(("/projects", "/login", "/account")) for p in spec["paths"])


def test_api_errors_have_the_json_shape(client, db):
    admin = make_admin(db)
    headers = bearer(make_token(db, admin))
    missing = client.get("/api/v1/projects/424242", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "project_not_found", "message": "project 424242 not found"}}
    unknown_route = client.get("/api/v1/nothing-here", headers=headers)
    assert unknown_route.status_code == 404 and unknown_route.json()["error"]["code"] == "not_found"
    wrong_type = client.get("/api/v1/projects/abc", headers=headers)
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["details"][0]["field"] == "project_id"


def test_invalid_json_body_is_422_naming_the_problem(client, db):
    admin = make_admin(db)
    from app.users.models import Scope

    headers = {**bearer(make_token(db, admin, Scope.admin)), "content-type": "application/json"}
    response = client.post("/api/v1/projects", content=b"{nope", headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid"
    assert "JSON" in response.json()["error"]["message"]


def test_oversized_body_is_413_json(client, db):
    admin = make_admin(db)
    response = client.post("/api/v1/projects", content=b"x" * (9 * 1024 * 1024),
                           headers={**bearer(make_token(db, admin)), "content-type": "application/json"})
    assert response.status_code == 413
    body = response.json()
    assert body["error"]["code"] == "payload_too_large" and "8,388,608 bytes" in body["error"]["message"]


def test_html_error_page_for_pages(client, db):
    admin = make_admin(db)
    login(client, admin)
    response = client.get("/projects/999999")
    assert response.status_code == 404
    page = BeautifulSoup(response.text, "html.parser")
    assert "404" in page.select_one("h1, h2").get_text()
    assert "project 999999 not found" in page.get_text()
    assert admin.username in page.select_one("nav").get_text()  # still shown as logged in


def test_pages_need_a_login(client):
    response = client.get("/projects/1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/projects/1"


def test_security_headers(client):
    headers = client.get("/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_healthz_is_503_when_the_database_is_gone(tmp_path):
    from fastapi.testclient import TestClient

    settings = Settings(data_dir=tmp_path, secret_key="k" * 40,
                        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    app = create_app(settings)
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"
    app.state.engine.dispose()


def test_secret_is_not_in_the_settings_repr(tmp_path):
    settings = Settings(data_dir=tmp_path, secret_key="s" * 40)
    assert "s" * 40 not in repr(settings)


def test_streamed_body_over_the_limit_is_413_and_imports_nothing(client, db, admin, admin_headers):
    from sqlalchemy import func, select

    from app.prompts.models import Prompt
    from tests.factories import make_project

    project = make_project(db, admin)

    def chunks():  # no Content-Length: the limit must be enforced while reading
        line = b'{"prompt": "' + b"x" * 64_000 + b'"}\n'
        for _ in range(150):
            yield line

    response = client.post(f"/api/v1/projects/{project.id}/prompts", content=chunks(),
                           headers={**admin_headers, "content-type": "application/x-ndjson"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Prompt)) == 0


def test_web_threads_sets_the_route_threadpool_and_the_connection_pool_and_startup_is_frozen(tmp_path):
    from anyio import to_thread
    from fastapi.testclient import TestClient

    app = create_app(Settings(data_dir=tmp_path, dev=True, secret_key="x" * 40, web_threads=5,
                              database_url="postgresql://postgres@127.0.0.1:5432/postgres"))
    assert app.state.engine.pool.size() == 5
    with TestClient(app) as client:
        # The lifespan sets the limiter of the server's event loop, the one sync routes run through.
        assert client.portal.call(lambda: to_thread.current_default_thread_limiter().total_tokens) == 5
        # What start-up made is left out of the garbage collector's passes while the app runs, and only then.
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
    app.state.engine.dispose()
