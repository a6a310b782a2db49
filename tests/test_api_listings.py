"""The REST API as scripts use it: every list pages by cursor, admin listings filter, labelers see only theirs."""

from app.users.models import Role, Scope
from app.users.service import authenticate
from tests.export.planted import OLD, PLAN, plant
from tests.factories import api_routes, bearer, make_project, make_token, make_user


def walk(client, url: str, headers, limit: int) -> list[dict]:
    """Every item of a listing, page by page; each page is full until the last."""
    items, cursor = [], None
    while True:
        joiner = "&" if "?" in url else "?"
        page = client.get(f"{url}{joiner}limit={limit}" + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert len(body["items"]) == limit


def test_every_list_route_pages_by_cursor(app):
    lists = []
    for method, path, route in api_routes(app):
        if path.startswith("/api/") and route.response_model is not None:
            fields = getattr(route.response_model, "model_fields", {})
            if "items" in fields:
                lists.append(path)
                assert "next_cursor" in fields, path
                assert "cursor" in {p.name for p in route.dependant.query_params}, path
    assert len(lists) >= 11, lists  # users, tokens, projects, prompts, tasks, judgments (own and all), ...
    assert "/api/v1/projects/{project_id}/comparisons" in lists and "/api/v1/jobs" in lists


def test_every_api_route_documents_its_response(client):
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            success = [responses[code] for code in ("200", "201") if code in responses]
            if not success:
                assert "204" in responses, f"{method.upper()} {path} documents no success response"
                continue
            assert success[0].get("content"), f"{method.upper()} {path} documents no response body"


def test_admin_lists_judgments_with_filters(client, db):
    planted = plant(db)
    base = f"/api/v1/projects/{planted.project.id}/judgments"
    everything = walk(client, base, planted.read_headers, limit=4)
    assert [j["id"] for j in everything] == [j.id for j in planted.judgments]
    first = everything[1]
    ids = [c.id for c in planted.completions[0]]
    assert first["ranks"] == {str(c): r for c, r in zip(ids, [1, 2, 3])}
    assert first["ratings"][str(ids[0])] == {"likert": 7, "flags": [], "note": "note 1.0"}
    assert first["user_id"] == planted.labelers[1].id and first["prompt_id"] == planted.prompts[0].id
    per_labeler = [sum(1 for _c, _u, _v, plan in PLAN for who, _r, _e in plan if who == n) for n in range(3)]
    for n, user in enumerate(planted.labelers):
        mine = client.get(f"{base}?labeler_id={user.id}", headers=planted.read_headers).json()["items"]
        assert len(mine) == per_labeler[n] and {j["user_id"] for j in mine} == {user.id}
    excluded = client.get(f"{base}?excluded=true", headers=planted.read_headers).json()["items"]
    assert [j["id"] for j in excluded] == [planted.judgments[6].id]
    assert excluded[0]["excluded_reason"] == "careless"
    old = client.get(f"{base}?until={OLD.year + 1}-01-01T00:00:00Z", headers=planted.read_headers).json()["items"]
    assert [j["id"] for j in old] == [planted.judgments[7].id]
    one_task = client.get(f"{base}?task_id={planted.tasks[1].id}", headers=planted.read_headers).json()["items"]
    assert {j["task_id"] for j in one_task} == {planted.tasks[1].id} and len(one_task) == 2
    naive = client.get(f"{base}?since=2026-01-01T00:00:00", headers=planted.read_headers)
    assert naive.status_code == 422 and "time zone" in naive.json()["error"]["message"]


def test_admin_lists_comparisons_with_filters(client, db):
    planted = plant(db)
    base = f"/api/v1/projects/{planted.project.id}/comparisons"
    everything = walk(client, base, planted.read_headers, limit=5)
    assert len(everything) == 27 and len({c["id"] for c in everything}) == 27  # 9 judgments x 3 pairs
    ties = client.get(f"{base}?tie=true", headers=planted.read_headers).json()["items"]
    assert len(ties) == 1 and ties[0]["margin"] == 0 and ties[0]["task_id"] == planted.tasks[1].id
    judgment = planted.judgments[0].id
    pairs = client.get(f"{base}?judgment_id={judgment}", headers=planted.read_headers).json()["items"]
    best, middle, worst = (c.id for c in planted.completions[0])
    assert {(p["chosen_id"], p["rejected_id"], p["margin"]) for p in pairs} == {
        (best, middle, 1), (best, worst, 2), (middle, worst, 1)}
    touching = client.get(f"{base}?completion_id={worst}", headers=planted.read_headers).json()["items"]
    assert len(touching) == 6 and all(worst in (p["chosen_id"], p["rejected_id"]) for p in touching)
    excluded = client.get(f"{base}?task_id={planted.tasks[3].id}", headers=planted.read_headers).json()["items"]
    assert len(excluded) == 3 and all(p["judgment_excluded"] for p in excluded)


def test_users_models_projects_tokens_and_prompts_page_and_filter(client, db):
    planted = plant(db)
    headers = planted.read_headers
    users = walk(client, "/api/v1/users", headers, limit=2)
    assert [u["id"] for u in users] == sorted(u["id"] for u in users) and len(users) == 4
    labelers = walk(client, "/api/v1/users?role=labeler", headers, limit=2)
    assert {u["id"] for u in labelers} == {u.id for u in planted.labelers}
    models = walk(client, "/api/v1/models?role=policy", headers, limit=1)
    assert {m["id"] for m in models} >= {v.id for v in planted.versions}
    for n in range(3):
        make_project(db, planted.admin, name=f"more-{n}")
    projects = walk(client, "/api/v1/projects", headers, limit=2)
    assert len(projects) == 4 and [p["id"] for p in projects] == sorted((p["id"] for p in projects), reverse=True)
    tokens = walk(client, "/api/v1/tokens", headers, limit=1)
    assert len(tokens) == 2
    prompts = f"/api/v1/projects/{planted.project.id}/prompts"
    chat = client.get(f"{prompts}?kind=chat", headers=headers).json()["items"]
    assert [p["id"] for p in chat] == [planted.prompts[1].id]
    bob = client.get(f"{prompts}?source_user=bob", headers=headers).json()["items"]
    assert [p["id"] for p in bob] == [planted.prompts[2].id, planted.prompts[4].id]
    tasks = client.get(f"/api/v1/projects/{planted.project.id}/tasks?prompt_id={planted.prompts[3].id}",
                       headers=headers).json()["items"]
    assert [t["id"] for t in tasks] == [planted.tasks[3].id]


def test_labeler_token_sees_only_what_the_labeler_may(client, db):
    planted = plant(db)
    me, other = planted.labelers[0], planted.labelers[1]
    outside = make_project(db, planted.admin, name="not-mine")
    headers = planted.labeler_headers
    listed = client.get("/api/v1/projects", headers=headers).json()["items"]
    assert [p["id"] for p in listed] == [planted.project.id]
    assert client.get(f"/api/v1/projects/{outside.id}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/projects/{outside.id}/prompts", headers=headers).status_code == 404
    mine = walk(client, f"/api/v1/judgments?project_id={planted.project.id}", headers, limit=2)
    assert sorted(j["id"] for j in mine) == sorted(j.id for j in planted.judgments if j.user_id == me.id)
    others = next(j for j in planted.judgments if j.user_id == other.id)
    assert client.get(f"/api/v1/judgments/{others.id}", headers=headers).status_code == 404
    for path in (f"/projects/{planted.project.id}/judgments", f"/projects/{planted.project.id}/comparisons",
                 f"/projects/{planted.project.id}/tasks", "/users", "/jobs", "/models",
                 f"/projects/{planted.project.id}/snapshots", f"/projects/{planted.project.id}/export"):
        response = client.get(f"/api/v1{path}", headers=headers)
        assert response.status_code == 403 and response.json()["error"]["code"] == "admin_only", path


def test_password_change_over_the_api(client, db):
    user = make_user(db, Role.labeler)
    label, read = bearer(make_token(db, user, Scope.label)), bearer(make_token(db, user, Scope.read))
    body = {"current_password": "correct-horse-battery", "new_password": "a-brand-new-password"}
    assert client.put("/api/v1/me/password", json=body, headers=read).status_code == 403
    wrong = client.put("/api/v1/me/password", json={**body, "current_password": "nope"}, headers=label)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_password"
    assert client.put("/api/v1/me/password", json=body, headers=label).status_code == 204
    db.expire_all()
    assert authenticate(session=db, username=user.username, password="a-brand-new-password") is not None
    assert authenticate(session=db, username=user.username, password="correct-horse-battery") is None
