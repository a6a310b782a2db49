"""Script in every text a labeler or admin can enter is shown as text on every page that shows it."""

import re

import httpx
from bs4 import BeautifulSoup
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.labeling.models import Task, TaskCompletion
from app.models.models import ModelRole, ModelVersion
from app.prompts.models import Completion, Prompt
from app.users.models import Role, Scope, User
from tests.factories import bearer, login, make_admin, make_token, make_user
from tests.labeling.test_label_page import browser, log_in, served  # noqa: F401  (fixtures)

# Every text field, entered through the API the way a person would.
FIELDS = ("project", "description", "guidelines", "likert", "flag", "display", "prompt", "external", "source",
          "completion", "rationale", "note", "demonstration", "token", "reason")


def payload(field: str) -> str:
    return f'<script>alert("{field}")</script><img src=x onerror=alert("{field}")>"\'&'


def _marker(field: str) -> str:
    return f'alert("{field}")'


def plant_scripts(http, db: Session) -> dict[str, int]:
    """A project full of script, built over the API by an admin and a labeler; returns the ids."""
    admin = make_admin(db, username="root")
    admin_h = bearer(make_token(db, admin, Scope.admin))
    bad_name = http.post("/api/v1/users", headers=admin_h,
                         json={"username": "<script>x</script>", "password": "long-enough-1"})
    assert bad_name.status_code == 422 and bad_name.json()["error"]["code"] == "invalid_username"
    created = http.post("/api/v1/users", headers=admin_h, json={
        "username": "lab", "password": "correct-horse-battery", "role": "labeler",
        "display_name": payload("display")})
    assert created.status_code == 201, created.text
    labeler = db.get(User, created.json()["id"])
    project = http.post("/api/v1/projects", headers=admin_h, json={
        "name": payload("project"), "description": payload("description"), "k": 2, "labels_per_task": 1,
        "guidelines": payload("guidelines") + "\n\n[a link](javascript:alert('link'))",
        "rating_schema": {"likert": {"label": payload("likert")}, "flags": [{"key": "evil", "label": payload("flag")}]},
        "labeler_ids": [labeler.id]})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    imported = http.post(f"/api/v1/projects/{project_id}/prompts", headers=admin_h, json=[
        {"prompt": payload("prompt"), "id": payload("external")[:200], "user": payload("source")[:200]}])
    assert imported.status_code == 201, imported.text

    # Completions come from the policy: written as the worker would.
    prompt = db.scalar(select(Prompt).where(Prompt.project_id == project_id))
    model = ModelVersion(role=ModelRole.policy, name="m", source="s", config={}, metrics={})
    db.add(model)
    db.flush()
    task = Task(project_id=project_id, prompt_id=prompt.id, labels_needed=2)  # a second labeler may lease it
    db.add(task)
    db.flush()
    for position in range(2):
        completion = Completion(prompt_id=prompt.id, model_version_id=model.id, text=payload("completion"),
                                text_hash=f"c{position}", token_count=1, finish_reason="stop", sampling_params={}, seed=1)
        db.add(completion)
        db.flush()
        db.add(TaskCompletion(task_id=task.id, completion_id=completion.id, position=position))
    db.commit()

    label_h = bearer(make_token(db, labeler, Scope.label))
    lease = http.post(f"/api/v1/projects/{project_id}/assignments", headers=label_h)
    assert lease.status_code == 201, lease.text
    ids = [c["id"] for c in lease.json()["completions"]]
    judged = http.post(f"/api/v1/assignments/{lease.json()['id']}/judgment",
                       headers={**label_h, "Idempotency-Key": "xss"}, json={
                           "ranks": {str(ids[0]): 1, str(ids[1]): 2}, "rationale": payload("rationale"),
                           "demonstration": payload("demonstration"),
                           "ratings": {str(ids[0]): {"likert": 3, "flags": ["evil"], "note": payload("note")}}})
    assert judged.status_code == 201, judged.text
    assert http.post("/api/v1/tokens", headers=label_h, json={"name": payload("token")[:100]}).status_code == 201
    excluded = http.post(f"/api/v1/judgments/{judged.json()['id']}/exclude", headers=admin_h,
                         json={"reason": payload("reason")})
    assert excluded.status_code == 200, excluded.text
    return {"project": project_id, "task": task.id, "admin": admin.id, "labeler": labeler.id}


def _check_page(html: str, where: str) -> set[str]:
    """No script can run from this page; returns the fields whose payload it shows as text."""
    page = BeautifulSoup(html, "html.parser")
    for script in page.find_all("script"):
        assert (script.get("src") or "").startswith("/static/"), f"{where}: {script}"
    for tag in page.find_all(True):
        for name, value in tag.attrs.items():
            assert not name.lower().startswith("on"), f"{where}: <{tag.name} {name}=...>"
            text = " ".join(value) if isinstance(value, list) else str(value)
            assert not re.match(r"\s*javascript:", text, re.IGNORECASE), f"{where}: {name}={text}"
        assert not (tag.name == "img" and tag.get("src") == "x"), where
    shown = page.get_text()
    return {f for f in FIELDS if _marker(f) in shown}


def test_script_is_shown_as_text_on_every_page(client, db):
    ids = plant_scripts(client, db)
    project, task = ids["project"], ids["task"]
    seen: dict[str, set[str]] = {}
    login(client, db.get(User, ids["admin"]))
    for path in ("/", f"/projects/{project}", f"/projects/{project}/edit", f"/projects/{project}/review",
                 f"/projects/{project}/review/queue", f"/tasks/{task}/review", "/admin/users", "/account",
                 f"/projects/{project}/label"):
        response = client.get(path)
        assert response.status_code == 200, path
        seen[path] = _check_page(response.text, path)
    client.cookies.clear()
    login(client, db.get(User, ids["labeler"]), "correct-horse-battery")
    for path in ("/", f"/projects/{project}", f"/projects/{project}/label", "/account"):
        response = client.get(path)
        assert response.status_code == 200, path
        seen["labeler " + path] = _check_page(response.text, path)

    assert set().union(*seen.values()) == set(FIELDS)  # each payload reached a page, and was only text there
    assert "project" in seen["/"] and "guidelines" in seen[f"/projects/{project}/label"]
    assert {"rationale", "note", "demonstration", "reason"} <= seen[f"/tasks/{task}/review"]


def test_no_script_runs_in_a_real_browser(browser, served):  # noqa: F811
    from playwright.sync_api import expect

    url, engine = served
    with Session(engine) as db, httpx.Client(base_url=url) as http:
        ids = plant_scripts(http, db)
        second = make_user(db, Role.labeler, username="lena")
        added = http.patch(f"/api/v1/projects/{ids['project']}", json={"labeler_ids": [ids["labeler"], second.id]},
                           headers=bearer(make_token(db, db.get(User, ids["admin"]), Scope.admin)))
        assert added.status_code == 200, added.text
    dialogs: list[str] = []
    admin_page = browser.new_page()
    admin_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(admin_page, url, "root")
    for path in (f"/projects/{ids['project']}", f"/tasks/{ids['task']}/review", f"/projects/{ids['project']}/review",
                 "/admin/users"):
        admin_page.goto(url + path)
        expect(admin_page.locator("main")).to_contain_text('alert("')
    page = browser.new_context().new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, url, "lena")
    page.goto(f"{url}/projects/{ids['project']}")
    page.click("#start-labeling")
    page.wait_for_selector("#task:not(.hidden)")
    # The prompt and completions arrive as JSON and label.js puts them in the page: shown as text, never run.
    expect(page.locator("#completions")).to_contain_text(_marker("completion"))
    expect(page.locator("#task")).to_contain_text(_marker("prompt"))
    assert page.locator("#task script, #task img[src='x']").count() == 0
    assert dialogs == []
