"""Projects over the API and through their pages: settings, checks, who sees what."""

import hashlib
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import NotFound
from app.labeling.models import Assignment, Judgment, Task
from app.projects.models import Project, ProjectMember
from app.projects.schemas import INSTRUCTGPT_FLAGS
from app.projects.service import find_project
from app.prompts.models import Prompt, PromptKind
from app.users.models import Role, Scope
from tests.factories import bearer, login, make_project, make_token, make_user

API = "/api/v1/projects"


def project_count(db: Session) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Project))


def reload(db: Session, project_id: int) -> Project:
    db.expire_all()
    return db.get(Project, project_id)


def add_prompt(db: Session, project: Project, text: str) -> Prompt:
    prompt = Prompt(project_id=project.id, kind=PromptKind.text, text=text, meta={},
                    content_hash=hashlib.sha256(text.encode()).hexdigest())
    db.add(prompt)
    db.flush()
    return prompt


def add_task(db: Session, project: Project, prompt: Prompt) -> Task:
    task = Task(project_id=project.id, prompt_id=prompt.id, labels_needed=project.labels_per_task)
    db.add(task)
    db.flush()
    return task


# Creating over the API.

def test_create_with_defaults(client, db, admin, admin_headers):
    response = client.post(API, json={"name": "  Summaries  "}, headers=admin_headers)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Summaries"
    assert (body["k"], body["labels_per_task"], body["allow_ties"]) == (4, 3, True)
    assert (body["description"], body["guidelines"], body["near_duplicate_prefix"]) == ("", "", None)
    assert (body["labeler_ids"], body["prompt_count"], body["current_policy_id"]) == ([], 0, None)
    assert body["rating_schema"]["likert"] == {"min": 1, "max": 7, "label": "Overall quality"}
    flags = {f["key"]: f["label"] for f in body["rating_schema"]["flags"]}
    assert len(flags) == 11
    assert list(flags) == [key for key, _label in INSTRUCTGPT_FLAGS]
    assert flags["hallucination"] == "Hallucination (makes up information)"
    assert flags["harmful_advice"] == "Gives harmful advice"
    assert flags["expresses_moral_judgment"] == "Expresses a moral judgment"
    assert body["sampling_params"] == {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 256}

    stored = reload(db, body["id"])
    assert (stored.name, stored.k, stored.labels_per_task, stored.created_by_id) == ("Summaries", 4, 3, admin.id)
    assert stored.rating_schema == body["rating_schema"]
    assert stored.sampling_params == body["sampling_params"]


def test_create_with_every_setting(client, db, admin_headers):
    labeler = make_user(db, Role.labeler)
    payload = {
        "name": "Custom", "description": "d", "guidelines": "# Rules", "k": 2, "labels_per_task": 20,
        "allow_ties": False, "near_duplicate_prefix": 50, "labeler_ids": [labeler.id],
        "rating_schema": {"likert": {"min": 0, "max": 10, "label": "Helpfulness"},
                          "flags": [{"key": "off_topic", "label": "Off topic"}]},
        "sampling_params": {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 4096},
    }
    response = client.post(API, json=payload, headers=admin_headers)
    assert response.status_code == 201, response.text
    body = response.json()
    for key, value in payload.items():
        assert body[key] == value, key
    assert [m.user_id for m in reload(db, body["id"]).members] == [labeler.id]


@pytest.mark.parametrize(("change", "field"), [
    ({"k": 1}, "k"),
    ({"k": 10}, "k"),
    ({"k": "four"}, "k"),
    ({"k": 4.5}, "k"),
    ({"labels_per_task": 0}, "labels_per_task"),
    ({"labels_per_task": 21}, "labels_per_task"),
    ({"allow_ties": "sometimes"}, "allow_ties"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"near_duplicate_prefix": 0}, "near_duplicate_prefix"),
    ({"rating_schema": {"flags": [{"key": "dup", "label": "A"}, {"key": "dup", "label": "B"}]}},
     "rating_schema.flags"),
    ({"rating_schema": {"flags": [{"key": "Bad Key!", "label": "A"}]}}, "rating_schema.flags.0.key"),
    ({"rating_schema": {"flags": [{"key": "ok", "label": ""}]}}, "rating_schema.flags.0.label"),
    ({"rating_schema": {"likert": {"min": 1, "max": 11}}}, "rating_schema.likert.max"),
    ({"sampling_params": {"temperature": 2.5}}, "sampling_params.temperature"),
    ({"sampling_params": {"top_p": 0}}, "sampling_params.top_p"),
    ({"sampling_params": {"max_new_tokens": 0}}, "sampling_params.max_new_tokens"),
])
def test_create_refuses_bad_settings_and_writes_nothing(client, db, admin_headers, change, field):
    response = client.post(API, json={"name": "Bad", **change}, headers=admin_headers)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith(f"{field}: ")
    assert [d["field"] for d in error["details"]] == [field]
    assert project_count(db) == 0


def test_create_names_the_duplicate_flag_key(client, db, admin_headers):
    flags = [{"key": "rude", "label": "Rude"}, {"key": "rude", "label": "Impolite"}]
    response = client.post(API, json={"name": "Flags", "rating_schema": {"flags": flags}}, headers=admin_headers)
    assert response.status_code == 422
    assert "flag key 'rude' appears twice" in response.json()["error"]["message"]
    assert project_count(db) == 0


def test_create_refuses_an_unknown_labeler(client, db, admin_headers):
    labeler = make_user(db, Role.labeler)
    response = client.post(API, json={"name": "P", "labeler_ids": [labeler.id, 99999]}, headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["error"] == {"code": "unknown_labeler", "message": "no user with id 99999"}
    assert project_count(db) == 0
    assert db.scalar(select(func.count()).select_from(ProjectMember)) == 0


def test_create_refuses_an_admin_as_labeler(client, db, admin, admin_headers):
    response = client.post(API, json={"name": "P", "labeler_ids": [admin.id]}, headers=admin_headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "not_a_labeler"
    assert error["message"].startswith(f"user {admin.id} is an admin")
    assert project_count(db) == 0


@pytest.mark.parametrize("second", ["Taken", "taken", "  TAKEN "])
def test_create_refuses_a_name_in_use(client, db, admin, admin_headers, second):
    make_project(db, admin, name="Taken")
    response = client.post(API, json={"name": second}, headers=admin_headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "project_name_taken"
    assert "'" + second.strip() + "' already exists" in response.json()["error"]["message"]
    assert project_count(db) == 1


def test_creating_needs_an_admin_token(client, db, admin):
    labeler = make_user(db, Role.labeler)
    for headers, status in [(bearer(make_token(db, labeler, Scope.label)), 403),
                            (bearer(make_token(db, admin, Scope.read)), 403),
                            ({}, 401)]:
        response = client.post(API, json={"name": "Nope"}, headers=headers)
        assert response.status_code == status, response.text
    assert project_count(db) == 0


# Changing over the API.

def test_patch_changes_only_the_given_fields(client, db, admin, admin_headers):
    project = make_project(db, admin, name="Before", description="keep me", k=5, guidelines="keep too")
    before = {c: getattr(project, c) for c in ("description", "k", "allow_ties", "guidelines", "rating_schema",
                                                "sampling_params", "near_duplicate_prefix")}

    response = client.patch(f"{API}/{project.id}", json={"name": "After", "labels_per_task": 7},
                            headers=admin_headers)

    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["labels_per_task"]) == ("After", 7)
    stored = reload(db, project.id)
    assert (stored.name, stored.labels_per_task) == ("After", 7)
    assert {c: getattr(stored, c) for c in before} == before


def test_patch_nested_settings_and_labelers(client, db, admin, admin_headers):
    first, second = make_user(db, Role.labeler), make_user(db, Role.labeler)
    project = make_project(db, admin, labeler_ids=[first.id])
    response = client.patch(f"{API}/{project.id}", headers=admin_headers, json={
        "sampling_params": {"temperature": 1.2}, "labeler_ids": [second.id], "near_duplicate_prefix": 30,
        "rating_schema": {"flags": []},
    })
    assert response.status_code == 200, response.text
    stored = reload(db, project.id)
    # A nested object given replaces the stored one; its missing fields take their defaults.
    assert stored.sampling_params == {"temperature": 1.2, "top_p": 0.95, "max_new_tokens": 256}
    assert stored.rating_schema == {"likert": {"min": 1, "max": 7, "label": "Overall quality"}, "flags": []}
    assert stored.near_duplicate_prefix == 30
    assert [m.user_id for m in stored.members] == [second.id]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"k": 10}, 422, "k: "),
    ({"k": None}, 422, "k cannot be null"),
    ({"rating_schema": None}, 422, "rating_schema cannot be null"),
    ({"labels_per_task": 0}, 422, "labels_per_task: "),
    ({"labeler_ids": [424242]}, 422, "no user with id 424242"),
    ({"name": "Other"}, 409, "'Other' already exists"),
    ({"name": "  "}, 422, "name must not be blank"),
])
def test_patch_refuses_bad_changes_and_changes_nothing(client, db, admin, admin_headers, body, status, needle):
    make_project(db, admin, name="Other")
    project = make_project(db, admin, name="Mine", k=3)
    response = client.patch(f"{API}/{project.id}", json=body, headers=admin_headers)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    stored = reload(db, project.id)
    assert (stored.name, stored.k, stored.labels_per_task, stored.members) == ("Mine", 3, 3, [])
    assert stored.rating_schema["flags"] != []


def test_patch_k_is_refused_once_tasks_exist(client, db, admin, admin_headers):
    project = make_project(db, admin, k=4)
    add_task(db, project, add_prompt(db, project, "Sampled already"))
    db.commit()

    response = client.patch(f"{API}/{project.id}", json={"k": 5, "labels_per_task": 1}, headers=admin_headers)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "k_locked"
    assert "K cannot change from 4 to 5" in error["message"]
    stored = reload(db, project.id)
    assert (stored.k, stored.labels_per_task) == (4, 3)

    same = client.patch(f"{API}/{project.id}", json={"k": 4, "labels_per_task": 1}, headers=admin_headers)
    assert same.status_code == 200, same.text
    assert reload(db, project.id).labels_per_task == 1


def test_patch_k_is_allowed_without_tasks(client, db, admin, admin_headers):
    project = make_project(db, admin, k=4)
    add_prompt(db, project, "Not sampled yet")
    db.commit()
    response = client.patch(f"{API}/{project.id}", json={"k": 9}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert reload(db, project.id).k == 9


def test_patch_unknown_project_is_404(client, db, admin_headers):
    response = client.patch(f"{API}/4242", json={"name": "x"}, headers=admin_headers)
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "project_not_found", "message": "project 4242 not found"}


@pytest.mark.parametrize("project_id", [0, 2**31, 10**20])
def test_ids_out_of_range_are_not_found(client, db, admin, admin_headers, project_id):
    make_project(db, admin)
    for response in (client.get(f"{API}/{project_id}", headers=admin_headers),
                     client.patch(f"{API}/{project_id}", json={"k": 3}, headers=admin_headers)):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "project_not_found"
    created = client.post(API, json={"name": "Big", "labeler_ids": [project_id]}, headers=admin_headers)
    assert created.status_code == 422, created.text
    assert created.json()["error"] == {"code": "unknown_labeler", "message": f"no user with id {project_id}"}
    assert project_count(db) == 1


@pytest.mark.parametrize("ref", ["99999999999", "0", "\u00b2"])
def test_find_project_by_an_impossible_id_is_not_found(db, admin, ref):
    make_project(db, admin, name="Only")
    with pytest.raises(NotFound) as caught:
        find_project(session=db, ref=ref)
    assert caught.value.message == f"no project with id or name {ref!r}"
    assert find_project(session=db, ref="ONLY").name == "Only"


# Labelers.

def test_labelers_see_only_their_projects(client, db, admin):
    labeler = make_user(db, Role.labeler)
    mine = make_project(db, admin, name="Mine", labeler_ids=[labeler.id])
    theirs = make_project(db, admin, name="Theirs")
    add_prompt(db, mine, "one")
    add_prompt(db, mine, "two")
    db.commit()
    headers = bearer(make_token(db, labeler, Scope.read))

    listing = client.get(API, headers=headers)
    assert listing.status_code == 200
    assert [(p["id"], p["prompt_count"]) for p in listing.json()["items"]] == [(mine.id, 2)]
    assert client.get(f"{API}/{mine.id}", headers=headers).json()["name"] == "Mine"
    hidden = client.get(f"{API}/{theirs.id}", headers=headers)
    assert hidden.status_code == 404
    assert hidden.json()["error"]["message"] == f"project {theirs.id} not found"

    admin_listing = client.get(API, headers=bearer(make_token(db, admin)))
    assert {p["name"] for p in admin_listing.json()["items"]} == {"Mine", "Theirs"}


def test_labelers_may_not_create_or_change_projects(client, db, admin):
    labeler = make_user(db, Role.labeler)
    project = make_project(db, admin, name="Fixed", labeler_ids=[labeler.id])
    headers = bearer(make_token(db, labeler, Scope.label))

    created = client.post(API, json={"name": "Mine now"}, headers=headers)
    changed = client.patch(f"{API}/{project.id}", json={"name": "Mine now", "k": 2}, headers=headers)

    for response in (created, changed):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_only"
    assert project_count(db) == 1
    stored = reload(db, project.id)
    assert (stored.name, stored.k) == ("Fixed", 4)


def test_labeler_pages_follow_membership(client, db, admin):
    labeler = make_user(db, Role.labeler)
    mine = make_project(db, admin, name="Visible", labeler_ids=[labeler.id])
    theirs = make_project(db, admin, name="Hidden")
    login(client, labeler)

    listing = BeautifulSoup(client.get("/").text, "html.parser")
    assert [a.get_text() for a in listing.select("tbody td a")] == ["Visible"]
    assert listing.select_one('a[href="/projects/new"]') is None
    page = client.get(f"/projects/{mine.id}")
    assert page.status_code == 200
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select_one("h1").get_text(strip=True) == "Visible"
    assert soup.select_one(f'a[href="/projects/{mine.id}/edit"]') is None
    assert client.get(f"/projects/{theirs.id}").status_code == 404
    assert client.get("/projects/new").status_code == 403


# Pages.

def form_fields(html: str) -> dict[str, object]:
    """The values a browser would submit from the project form."""
    form = BeautifulSoup(html, "html.parser").select_one("form.form")
    fields: dict[str, object] = {}
    for element in form.select("input, textarea"):
        name = element.get("name")
        if not name:
            continue
        if element.name == "textarea":
            fields[name] = element.get_text()
        elif element.get("type") == "checkbox":
            if element.has_attr("checked"):
                fields.setdefault(name, []).append(element.get("value"))  # type: ignore[union-attr]
        else:
            fields[name] = element.get("value", "")
    return {k: (v[0] if isinstance(v, list) and k != "labeler_ids" else v) for k, v in fields.items()}


GUIDELINES = """\
# How to rank

Prefer **truthful** answers.

<script>alert("owned")</script>

[click me](javascript:alert(1))
"""


def test_create_through_the_form_and_see_the_detail_page(client, db, admin):
    labeler = make_user(db, Role.labeler, username="lena")
    login(client, admin)
    new_page = client.get("/projects/new")
    assert new_page.status_code == 200
    fields = form_fields(new_page.text)
    assert (fields["k"], fields["labels_per_task"], fields["allow_ties"]) == ("4", "3", "on")
    assert fields["flags_text"].splitlines()[2] == "hallucination: Hallucination (makes up information)"
    fields.update({
        "name": "From the form", "description": "Made in a browser", "k": "3", "labels_per_task": "2",
        "likert_label": "How good is it?", "flags_text": "off_topic: Off topic\n\nrude:  Rude tone \n",
        "temperature": "0.5", "top_p": "0.9", "max_new_tokens": "64", "near_duplicate_prefix": "25",
        "guidelines": GUIDELINES, "labeler_ids": [str(labeler.id)],
    })
    del fields["allow_ties"]  # unticked

    response = client.post("/projects/new", data=fields, follow_redirects=False)

    assert response.status_code == 303, response.text
    project = db.scalar(select(Project).where(Project.name == "From the form"))
    assert response.headers["location"] == f"/projects/{project.id}"
    assert (project.k, project.labels_per_task, project.allow_ties, project.near_duplicate_prefix) == (3, 2, False, 25)
    assert project.rating_schema == {"likert": {"min": 1, "max": 7, "label": "How good is it?"},
                                     "flags": [{"key": "off_topic", "label": "Off topic"},
                                               {"key": "rude", "label": "Rude tone"}]}
    assert project.sampling_params == {"temperature": 0.5, "top_p": 0.9, "max_new_tokens": 64}
    assert project.guidelines == GUIDELINES
    assert [m.user_id for m in project.members] == [labeler.id]

    prompts = [add_prompt(db, project, text) for text in ("p1", "p2", "p3")]
    task = add_task(db, project, prompts[0])
    assignment = Assignment(task_id=task.id, user_id=labeler.id, display_order=[],
                            lease_expires_at=utcnow() + timedelta(hours=1))
    db.add(assignment)
    db.flush()
    db.add(Judgment(task_id=task.id, user_id=labeler.id, assignment_id=assignment.id, idempotency_key="k1",
                    request_hash="0" * 64, prompt_flags=[]))
    db.commit()

    page = BeautifulSoup(client.get(response.headers["location"]).text, "html.parser")
    assert page.select_one("h1").get_text(strip=True) == "From the form"
    assert page.select_one("p.lead").get_text() == "Made in a browser"
    stats = {s: page.select_one(f"#stat-{s}").get_text(strip=True) for s in ("prompts", "tasks", "judgments")}
    assert stats == {"prompts": "3", "tasks": "1", "judgments": "1"}
    settings = {dt.get_text(strip=True): dt.find_next_sibling("dd") for dt in page.select("dl.settings dt")}
    assert settings["Completions per prompt (K)"].get_text(strip=True) == "3"
    assert settings["Labelers per task"].get_text(strip=True) == "2"
    assert settings["Ties allowed"].get_text(strip=True) == "no"
    assert " ".join(settings["Likert question"].get_text().split()) == "How good is it? (scale 1–7)"
    assert [(li.code.get_text(), li.get_text(" ", strip=True)) for li in settings["Flags"].select("li")] == [
        ("off_topic", "off_topic Off topic"), ("rude", "rude Rude tone")]
    assert settings["Sampling"].get_text(strip=True) == "temperature 0.5, top-p 0.9, max new tokens 64"
    assert "first 25 characters" in settings["Near-duplicates"].get_text()
    labelers_section = page.select_one('section[aria-labelledby="labelers-heading"]')
    members = labelers_section.select("li")
    assert len(members) == 1 and "lena" in members[0].get_text()

    guidelines = page.select_one("#guidelines .markdown")
    assert guidelines.select_one("h1").get_text() == "How to rank"
    assert guidelines.select_one("strong").get_text() == "truthful"
    assert guidelines.select("script") == []
    assert page.select("script") == []
    assert '<script>alert("owned")</script>' in guidelines.get_text()
    assert all(not (a.get("href") or "").startswith("javascript:") for a in guidelines.select("a"))


def test_form_with_k_out_of_range_is_shown_again_with_the_error(client, db, admin):
    csrf = login(client, admin)
    fields = form_fields(client.get("/projects/new").text)
    fields.update({"name": "Too many", "k": "12", "description": "kept on the page"})

    response = client.post("/projects/new", data=fields, follow_redirects=False)

    assert response.status_code == 422
    page = BeautifulSoup(response.text, "html.parser")
    alert = page.select_one(".alert-error")
    assert alert.p.get_text().startswith("Please fix: k: ")
    assert [li.get_text(strip=True) for li in alert.select("li")] == ["k: Input should be less than or equal to 9"]
    again = form_fields(response.text)
    assert (again["name"], again["k"], again["description"]) == ("Too many", "12", "kept on the page")
    assert again["csrf_token"] == csrf
    assert project_count(db) == 0


@pytest.mark.parametrize(("change", "needle"), [
    ({"flags_text": "no colon here"}, "flags line 1: write it as 'key: Label'"),
    ({"flags_text": "Bad Key: label"}, "flag key must be lowercase"),
    ({"flags_text": "a: A\na: again"}, "flag key 'a' appears twice"),
    ({"temperature": ""}, "temperature"),
    ({"labels_per_task": "21"}, "labels_per_task"),
])
def test_form_refuses_other_bad_values(client, db, admin, change, needle):
    login(client, admin)
    fields = form_fields(client.get("/projects/new").text)
    fields.update({"name": "Bad form", **change})
    response = client.post("/projects/new", data=fields, follow_redirects=False)
    assert response.status_code == 422
    assert needle in BeautifulSoup(response.text, "html.parser").select_one(".alert-error").get_text()
    assert project_count(db) == 0


def test_form_with_a_name_in_use_is_refused(client, db, admin):
    make_project(db, admin, name="Taken")
    login(client, admin)
    fields = form_fields(client.get("/projects/new").text)
    fields["name"] = "Taken"
    response = client.post("/projects/new", data=fields, follow_redirects=False)
    assert response.status_code == 409
    assert "'Taken' already exists" in BeautifulSoup(response.text, "html.parser").select_one(".alert-error").get_text()
    assert project_count(db) == 1


def test_form_without_csrf_token_is_refused(client, db, admin):
    login(client, admin)
    fields = form_fields(client.get("/projects/new").text)
    fields.update({"name": "Forged", "csrf_token": "nope"})
    response = client.post("/projects/new", data=fields, follow_redirects=False)
    assert response.status_code == 403
    assert project_count(db) == 0


def test_form_ignores_labeler_values_that_are_not_ids(client, db, admin):
    labeler = make_user(db, Role.labeler)
    login(client, admin)
    fields = form_fields(client.get("/projects/new").text)
    fields.update({"name": "Odd values", "labeler_ids": ["\u00b2", "x", str(labeler.id)]})
    response = client.post("/projects/new", data=fields, follow_redirects=False)
    assert response.status_code == 303, response.text
    project = db.scalar(select(Project).where(Project.name == "Odd values"))
    assert [m.user_id for m in project.members] == [labeler.id]


def test_edit_through_the_form(client, db, admin):
    keep, drop = make_user(db, Role.labeler), make_user(db, Role.labeler)
    project = make_project(db, admin, name="Editable", k=4, labeler_ids=[keep.id, drop.id], guidelines="old",
                           rating_schema={"likert": {"min": 0, "max": 10, "label": "Old question"}, "flags": []})
    login(client, admin)

    edit_page = client.get(f"/projects/{project.id}/edit")
    assert edit_page.status_code == 200
    fields = form_fields(edit_page.text)
    assert (fields["name"], fields["k"], fields["guidelines"], fields["flags_text"]) == ("Editable", "4", "old", "")
    assert sorted(fields["labeler_ids"]) == sorted([str(keep.id), str(drop.id)])
    fields.update({"name": "Edited", "k": "6", "guidelines": "new **rules**", "likert_label": "New question",
                   "flags_text": "verbose: Too long", "labeler_ids": [str(keep.id)], "near_duplicate_prefix": ""})

    response = client.post(f"/projects/{project.id}/edit", data=fields, follow_redirects=False)

    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/projects/{project.id}"
    stored = reload(db, project.id)
    assert (stored.name, stored.k, stored.guidelines, stored.near_duplicate_prefix) == ("Edited", 6, "new **rules**", None)
    # The scale's ends are not on the form and stay as they were.
    assert stored.rating_schema == {"likert": {"min": 0, "max": 10, "label": "New question"},
                                    "flags": [{"key": "verbose", "label": "Too long"}]}
    assert [m.user_id for m in stored.members] == [keep.id]
    assert project_count(db) == 1


def test_edit_form_refuses_k_once_tasks_exist(client, db, admin):
    project = make_project(db, admin, name="Locked", k=4)
    add_task(db, project, add_prompt(db, project, "sampled"))
    db.commit()
    login(client, admin)
    fields = form_fields(client.get(f"/projects/{project.id}/edit").text)
    fields.update({"k": "2", "name": "Renamed too"})
    response = client.post(f"/projects/{project.id}/edit", data=fields, follow_redirects=False)
    assert response.status_code == 409
    assert "K cannot change from 4 to 2" in BeautifulSoup(response.text, "html.parser").select_one(
        ".alert-error").get_text()
    stored = reload(db, project.id)
    assert (stored.name, stored.k) == ("Locked", 4)


def test_edit_page_of_unknown_project_is_404(client, db, admin):
    login(client, admin)
    response = client.get("/projects/4242/edit")
    assert response.status_code == 404
    assert "project 4242 not found" in BeautifulSoup(response.text, "html.parser").get_text()


def test_pages_need_a_login(client, db, admin):
    project = make_project(db, admin)
    response = client.get(f"/projects/{project.id}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/projects/{project.id}"
