"""app/labeling/fastpath.py: ordinary leases and submissions answered without FastAPI's dispatch, the rest
handed on to the FastAPI routes with their errors; on both databases, with no dependency overridden."""

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import make_engine
from app.labeling import fastpath
from app.labeling.models import Comparison, Judgment
from app.main import create_app
from app.users.models import ApiToken, Role, Scope, User
from app.users.service import hash_token, revoke_token
from tests.conftest import TEST_SECRET
from tests.factories import bearer, login, make_admin, make_project, make_tasks, make_token, make_user


@pytest.fixture
def queue(fresh_database_url, tmp_path, monkeypatch) -> Iterator[tuple]:
    """A served app on its own database (no dependency overridden), a project with 2 tasks, a labeler's
    token, and the list of requests the fast path answered."""
    engine = make_engine(fresh_database_url)
    with Session(engine, expire_on_commit=False) as db:
        admin = make_admin(db)
        labeler = make_user(db, Role.labeler)
        project = make_project(db, admin, k=3, labels_per_task=1, labeler_ids=[labeler.id])
        make_tasks(db, project, n=2, k=3)
        headers = bearer(make_token(db, labeler, Scope.label))
        ids = (project.id, labeler)
    answered: list[str] = []
    real = fastpath._in_session

    def counting(request, answer, *args):
        answered.append(answer.__name__)
        return real(request, answer, *args)

    monkeypatch.setattr(fastpath, "_in_session", counting)
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=fresh_database_url, secret_key=TEST_SECRET))
    with TestClient(app) as client:
        yield client, ids[0], ids[1], headers, answered, engine
    app.state.engine.dispose()
    engine.dispose()


def _ranked(lease: dict) -> dict:
    return {"ranks": {str(c["id"]): i + 1 for i, c in enumerate(lease["completions"])},
            "ratings": {str(lease["completions"][0]["id"]): {"likert": 6, "flags": [], "note": "ok"}}}


def test_ordinary_lease_and_submit_are_answered_by_the_fast_path(queue):
    client, project_id, _labeler, headers, answered, engine = queue
    leased = client.post(f"/api/v1/projects/{project_id}/assignments", headers=headers)
    assert leased.status_code == 201 and len(leased.json()["completions"]) == 3
    url = f"/api/v1/assignments/{leased.json()['id']}/judgment"
    key = {**headers, "Idempotency-Key": "fast-1"}
    first = client.post(url, headers=key, json=_ranked(leased.json()))
    again = client.post(url, headers=key, json=_ranked(leased.json()))
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert sorted((c["margin"], c["is_tie"]) for c in first.json()["comparisons"]) == [(1, False), (1, False), (2, False)]
    assert answered == ["leased", "submitted", "submitted"]
    # The headers every response gets still come from the middleware around both paths.
    assert first.headers["x-content-type-options"] == "nosniff"
    with Session(engine) as db:
        assert db.scalar(select(func.count()).select_from(Judgment)) == 1
        assert db.scalar(select(func.count()).select_from(Comparison)) == 3


def test_unusual_requests_are_handed_on_and_get_fastapis_answers(queue):
    client, project_id, _labeler, headers, answered, engine = queue
    lease_url = f"/api/v1/projects/{project_id}/assignments"
    unknown = client.post(lease_url + "?shuffle=0", headers=headers)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_parameter"
    assert client.post("/api/v1/projects/abc/assignments", headers=headers).status_code == 422
    assert client.get(lease_url, headers=headers).status_code == 405
    leased = client.post(lease_url, headers=headers).json()
    url = f"/api/v1/assignments/{leased['id']}/judgment"
    missing_key = client.post(url, headers=headers, json=_ranked(leased))
    assert missing_key.status_code == 422 and "idempotency-key" in missing_key.text.lower()
    # Read here, found invalid, handed on with its body: FastAPI's validation names the field.
    bad = client.post(url, headers={**headers, "Idempotency-Key": "k1"}, json={"ranks": "first"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid"
    assert "ranks" in bad.text
    nul = client.post(url, headers={**headers, "Idempotency-Key": "k2"},
                      json={**_ranked(leased), "rationale": "a\u0000b"})
    assert nul.status_code == 422 and nul.json()["error"]["code"] == "nul_character"
    anonymous = client.post(url, json=_ranked(leased), headers={"Idempotency-Key": "k3"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
    # The ordinary lease, and the anonymous submission (ordinary input, refused by the routes' own check).
    assert answered == ["leased", "submitted"]
    with Session(engine) as db:
        assert db.scalar(select(func.count()).select_from(Judgment)) == 0


def test_a_browser_session_needs_its_csrf_token_on_the_fast_path(queue):
    client, project_id, labeler, _headers, answered, _engine = queue
    csrf = login(client, labeler)
    lease_url = f"/api/v1/projects/{project_id}/assignments"
    refused = client.post(lease_url)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    leased = client.post(lease_url, headers={"X-CSRF-Token": csrf})
    assert leased.status_code == 201
    assert answered == ["leased"]  # the refused one never reached the database


def test_the_routes_take_only_what_the_fast_path_handles(app):
    """The fast path answers for these two routes: a new dependency or parameter on either must be handled
    in app/labeling/fastpath.py too (or there the request handed on), and this list updated."""
    from tests.factories import api_routes

    taken = {path: ([d.call.__name__ for d in route.dependant.dependencies],
                    sorted(p.name for p in route.dependant.path_params + route.dependant.header_params
                           + route.dependant.body_params + route.dependant.query_params))
             for method, path, route in api_routes(app) if method == "POST"}
    assert taken["/api/v1/projects/{project_id}/assignments"] == (["get_session"], ["project_id"])
    assert taken["/api/v1/assignments/{assignment_id}/judgment"] == (
        ["get_session"], ["assignment_id", "body", "idempotency_key"])
    assert [route.path for route in app.router.routes[:2]] == [
        "/api/v1/projects/{project_id}/assignments", "/api/v1/assignments/{assignment_id}/judgment"]


def test_only_a_live_label_token_of_an_active_account_may_use_the_queue(queue):
    """The hot routes look a token up without loading its account (token_caller): the same refusals as
    every other route, checked on both the lease and the submission."""
    client, project_id, labeler, headers, answered, engine = queue
    lease_url = f"/api/v1/projects/{project_id}/assignments"
    leased = client.post(lease_url, headers=headers).json()
    url = f"/api/v1/assignments/{leased['id']}/judgment"
    with Session(engine, expire_on_commit=False) as db:
        reader = bearer(make_token(db, labeler, Scope.read))
        spare = bearer(make_token(db, labeler, Scope.label))
        revoked_token = make_token(db, labeler, Scope.label)
        revoke_token(session=db, user=labeler, token_id=db.scalar(
            select(ApiToken.id).where(ApiToken.token_hash == hash_token(revoked_token))))
        db.commit()
    cases = [(reader, 403, "insufficient_scope"), (bearer(revoked_token), 401, "invalid_token"),
             (bearer("pl_not_a_token"), 401, "invalid_token"), ({"Authorization": "Basic abc"}, 401, "invalid_token")]
    for who, status, code in cases:
        for response in (client.post(lease_url, headers=who),
                         client.post(url, headers={**who, "Idempotency-Key": "who"}, json=_ranked(leased))):
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    with Session(engine) as db:
        db.get(User, labeler.id).is_active = False
        db.commit()
    gone = client.post(url, headers={**spare, "Idempotency-Key": "who"}, json=_ranked(leased))
    assert (gone.status_code, gone.json()["error"]["code"]) == (401, "invalid_token")
    assert answered == ["leased"] + ["leased", "submitted"] * len(cases) + ["submitted"]
    with Session(engine) as db:
        assert db.scalar(select(func.count()).select_from(Judgment)) == 0


def test_the_fast_path_runs_on_the_queue_threads_of_each_start(fresh_database_url, tmp_path, monkeypatch):
    """Its own executor (app.state.queue_threads), replaced when the app starts again after stopping."""
    engine = make_engine(fresh_database_url)
    with Session(engine, expire_on_commit=False) as db:
        admin = make_admin(db)
        project = make_project(db, admin, k=2, labels_per_task=1)
        make_tasks(db, project, n=2, k=2)
        headers = bearer(make_token(db, admin, Scope.label))
    engine.dispose()
    ran_on: list[str] = []
    real = fastpath.leased

    def recording(*args):
        ran_on.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(fastpath, "leased", recording)
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=fresh_database_url, secret_key=TEST_SECRET))
    executors = []
    for _start in range(2):
        with TestClient(app) as client:
            executors.append(app.state.queue_threads)
            assert client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers).status_code == 201
    app.state.engine.dispose()
    assert executors[0] is not executors[1]
    for stopped in executors:  # each start's threads were shut down when it stopped
        with pytest.raises(RuntimeError, match="shutdown"):
            stopped.submit(int)
    assert len(ran_on) == 2 and all(name.startswith("preflab-queue") for name in ran_on)
