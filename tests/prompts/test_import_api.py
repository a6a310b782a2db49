"""Importing prompts over the API, the upload form and the command line; listing them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import make_engine
from app.projects.models import Project
from app.prompts.models import Prompt, PromptKind
from app.users.models import ApiToken, Role, Scope
from app.users.service import hash_token, revoke_token
from tests.conftest import TEST_SECRET
from tests.factories import bearer, login, make_admin, make_project, make_token, make_user

ROOT = Path(__file__).resolve().parents[2]
NDJSON = {"content-type": "application/x-ndjson"}


def jsonl(*objects: object) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objects).encode()


def prompt_count(db: Session, project: Project | None = None) -> int:
    db.expire_all()
    query = select(func.count()).select_from(Prompt)
    if project is not None:
        query = query.where(Prompt.project_id == project.id)
    return db.scalar(query)


def stored(db: Session, project: Project) -> list[Prompt]:
    db.expire_all()
    return list(db.scalars(select(Prompt).where(Prompt.project_id == project.id).order_by(Prompt.id)))


@pytest.fixture
def project(db, admin):
    return make_project(db, admin)


def post_prompts(client, project_id: int, body: bytes, headers: dict, **params):
    return client.post(f"/api/v1/projects/{project_id}/prompts", content=body, headers=headers, params=params)


# Importing over the API.

def test_import_jsonl_stores_every_field_and_a_second_import_only_counts_duplicates(client, db, admin,
                                                                                    admin_headers, project):
    chat = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Cheer me up."}]
    body = jsonl(
        {"prompt": "Explain tides.", "id": "t1", "user": "alice", "meta": {"topic": "science", "n": 3}},
        {"messages": chat, "id": "c1", "user": "bob"},
        {"prompt": "No id here."},
    )
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})

    assert response.status_code == 201, response.text
    assert response.json() == {"total": 3, "imported": 3, "duplicates": 0, "near_duplicates": 0}
    rows = stored(db, project)
    assert [(p.external_id, p.kind, p.text, p.source_user, p.meta) for p in rows] == [
        ("t1", PromptKind.text, "Explain tides.", "alice", {"topic": "science", "n": 3}),
        ("c1", PromptKind.chat, "system: Be kind.\n\nuser: Cheer me up.", "bob", {}),
        (None, PromptKind.text, "No id here.", None, {}),
    ]
    assert rows[1].messages == chat and rows[0].messages is None
    assert {p.source for p in rows} == {"api"}
    assert {p.created_by_id for p in rows} == {admin.id}

    again = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert again.status_code == 201, again.text
    assert again.json() == {"total": 3, "imported": 0, "duplicates": 3, "near_duplicates": 0}
    assert prompt_count(db, project) == 3


def test_import_json_array_body(client, db, admin_headers, project):
    body = json.dumps([{"prompt": "One"}, {"prompt": "Two", "id": 2}]).encode()
    response = post_prompts(client, project.id, body, {**admin_headers, "content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 2
    assert [(p.text, p.external_id) for p in stored(db, project)] == [("One", None), ("Two", "2")]


def test_import_csv_body_keeps_extra_columns_as_meta(client, db, admin_headers, project):
    body = b'id,prompt,user,topic\nq1,"What is\nentropy?",carol,physics\nq2,Define work,dave,\n'
    response = post_prompts(client, project.id, body, {**admin_headers, "content-type": "text/csv"})
    assert response.status_code == 201, response.text
    assert response.json() == {"total": 2, "imported": 2, "duplicates": 0, "near_duplicates": 0}
    assert [(p.external_id, p.text, p.source_user, p.meta) for p in stored(db, project)] == [
        ("q1", "What is\nentropy?", "carol", {"topic": "physics"}),
        ("q2", "Define work", "dave", {}),
    ]


def test_format_query_overrides_the_content_type(client, db, admin_headers, project):
    body = b"prompt\nfirst from csv\nsecond from csv\n"
    # Read as JSONL (the content type says so), this body is two bad lines.
    as_jsonl = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert as_jsonl.status_code == 422
    assert prompt_count(db, project) == 0

    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON}, format="csv")
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 2
    assert [p.text for p in stored(db, project)] == ["first from csv", "second from csv"]


def test_unknown_format_query_is_refused(client, db, admin_headers, project):
    response = post_prompts(client, project.id, jsonl({"prompt": "x"}), admin_headers, format="xml")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid"
    assert "format" in response.json()["error"]["message"]
    assert prompt_count(db) == 0


def test_duplicates_inside_one_file_are_imported_once(client, db, admin_headers, project):
    body = jsonl({"prompt": "Same"}, {"prompt": "Other"}, {"prompt": "Same"}, {"prompt": "  Same "},
                 {"prompt": "Other"})
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert response.json() == {"total": 5, "imported": 2, "duplicates": 3, "near_duplicates": 0}
    assert [p.text for p in stored(db, project)] == ["Same", "Other"]


def test_near_duplicates_share_the_prefix_with_existing_and_earlier_prompts(client, db, admin, admin_headers):
    project = make_project(db, admin, near_duplicate_prefix=20)
    prefix = "Translate to French"  # 19 characters; with the space below, 20
    first = post_prompts(client, project.id, jsonl({"prompt": f"{prefix} : the cat sleeps"}),
                         {**admin_headers, **NDJSON})
    assert first.json()["imported"] == 1

    body = jsonl(
        {"prompt": f"{prefix} : the dog barks"},     # same 20 chars as the stored prompt
        {"prompt": "Summarize this text: apples"},  # new
        {"prompt": "Summarize this text: pears"},   # same 20 chars as the line before
        {"prompt": "Short prompt"},                 # shorter than 20: never a near-duplicate
        {"prompt": "Short prompt!"},
        {"prompt": f"{prefix} : the cat sleeps"},    # exact duplicate: counted as a duplicate
    )
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert response.status_code == 201, response.text
    assert response.json() == {"total": 6, "imported": 3, "duplicates": 1, "near_duplicates": 2}
    assert [p.text for p in stored(db, project)] == [
        f"{prefix} : the cat sleeps", "Summarize this text: apples", "Short prompt", "Short prompt!",
    ]


def test_without_a_prefix_rule_similar_prompts_are_all_imported(client, db, admin_headers, project):
    body = jsonl({"prompt": "Summarize this text: apples"}, {"prompt": "Summarize this text: pears"})
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert response.json() == {"total": 2, "imported": 2, "duplicates": 0, "near_duplicates": 0}


def test_an_id_already_used_for_other_content_refuses_the_whole_file(client, db, admin_headers, project):
    assert post_prompts(client, project.id, jsonl({"prompt": "Original", "id": "x1"}),
                        {**admin_headers, **NDJSON}).status_code == 201

    body = jsonl({"prompt": "A good new prompt"}, {"prompt": "Changed", "id": "x1"}, {"prompt": "Another good one"})
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "prompt_id_taken"
    assert error["details"] == [{"line": 2, "message": "id 'x1' already belongs to a different prompt in this project"}]
    assert [p.text for p in stored(db, project)] == ["Original"]


def test_the_same_id_with_the_same_content_is_a_duplicate(client, db, admin_headers, project):
    body = jsonl({"prompt": "Original", "id": "x1"})
    post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert response.json() == {"total": 1, "imported": 0, "duplicates": 1, "near_duplicates": 0}


def test_ids_and_content_are_per_project(client, db, admin, admin_headers, project):
    other = make_project(db, admin)
    post_prompts(client, project.id, jsonl({"prompt": "Shared", "id": "s"}), {**admin_headers, **NDJSON})
    response = post_prompts(client, other.id, jsonl({"prompt": "Shared", "id": "s"}), {**admin_headers, **NDJSON})
    assert response.json()["imported"] == 1
    assert (prompt_count(db, project), prompt_count(db, other)) == (1, 1)


def test_bad_file_lists_each_bad_line_and_imports_nothing(client, db, admin_headers, project):
    post_prompts(client, project.id, jsonl({"prompt": "Already here"}), {**admin_headers, **NDJSON})
    body = b'{"prompt": "good"}\n{"prompt": \n{"prompt": "good too"}\n{"prompt": ""}\n{"promt": "typo"}\n'
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_prompt_file"
    assert [d["line"] for d in error["details"]] == [2, 4, 5]
    assert error["details"][1]["message"] == "prompt is empty"
    assert "unknown field 'promt'" in error["details"][2]["message"]
    assert error["message"].startswith("3 bad lines, nothing imported")
    assert [p.text for p in stored(db, project)] == ["Already here"]


def test_values_postgresql_cannot_store_are_refused_before_writing(client, db, admin_headers, project):
    body = (b'{"prompt": "fine"}\n{"prompt": "x", "meta": {"n": NaN}}\n{"prompt": "y", "meta": {"s": "\\u0000"}}\n'
            b'{"prompt": "\\udfff"}\n')
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_prompt_file"
    assert [(d["line"], d["message"].split(" (")[0]) for d in error["details"]] == [
        (2, "meta holds NaN or Infinity"), (3, "meta holds a NUL character"), (4, "prompt contains a lone surrogate")]
    assert prompt_count(db) == 0


def test_non_utf8_body_is_refused(client, db, admin_headers, project):
    response = post_prompts(client, project.id, b'{"prompt": "ok"}\n{"prompt": "\xff"}\n',
                            {**admin_headers, **NDJSON})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "not_utf8"
    assert "offset 29 (line 2)" in error["message"]
    assert prompt_count(db) == 0


def test_empty_body_is_refused(client, db, admin_headers, project):
    response = post_prompts(client, project.id, b"", {**admin_headers, **NDJSON})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "empty_prompt_file"


def test_oversized_body_is_refused_with_413(client, db, admin_headers, project):
    line = json.dumps({"prompt": "x" * 1000}).encode() + b"\n"
    body = line * (9 * 1024 * 1024 // len(line) + 1)
    assert len(body) > 9 * 1024 * 1024
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "8,388,608 bytes" in error["message"]
    assert prompt_count(db) == 0


# Who may import.

def test_unknown_project_is_404(client, db, admin_headers, project):
    response = post_prompts(client, project.id + 1000, jsonl({"prompt": "x"}), {**admin_headers, **NDJSON})
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "project_not_found", "message": f"project {project.id + 1000} not found"}
    assert prompt_count(db) == 0


def test_project_id_out_of_range_is_404(client, db, admin_headers, project):
    response = post_prompts(client, 2**31, jsonl({"prompt": "x"}), {**admin_headers, **NDJSON})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "project_not_found"
    listing = client.get(f"/api/v1/projects/{10**12}/prompts", headers=admin_headers)
    assert listing.status_code == 404
    assert prompt_count(db) == 0


@pytest.mark.parametrize(("who", "status", "code"), [
    ("labeler", 403, "admin_only"),
    ("read_admin", 403, "insufficient_scope"),
    ("label_admin", 403, "insufficient_scope"),
    ("nobody", 401, "not_authenticated"),
    ("revoked", 401, "invalid_token"),
    ("garbage", 401, "invalid_token"),
])
def test_only_an_admin_token_may_import(client, db, admin, project, who, status, code):
    if who == "labeler":
        labeler = make_user(db, Role.labeler)
        project = make_project(db, admin, labeler_ids=[labeler.id])  # even a member may not import
        headers = bearer(make_token(db, labeler, Scope.label))
    elif who == "read_admin":
        headers = bearer(make_token(db, admin, Scope.read))
    elif who == "label_admin":
        headers = bearer(make_token(db, admin, Scope.label))
    elif who == "revoked":
        plain = make_token(db, admin, Scope.admin)
        token = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plain)))
        revoke_token(session=db, user=admin, token_id=token.id)
        db.commit()
        headers = bearer(plain)
    elif who == "garbage":
        headers = bearer("pfl_not-a-real-token")
    else:
        headers = {}
    response = post_prompts(client, project.id, jsonl({"prompt": "sneaky"}), {**headers, **NDJSON})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert prompt_count(db) == 0


# Size.

def test_ten_thousand_prompts_in_one_request(client, db, admin_headers, project):
    body = b"".join(b'{"prompt": "Prompt number %d", "id": "p%d"}\n' % (i, i) for i in range(10_000))
    response = post_prompts(client, project.id, body, {**admin_headers, **NDJSON})
    assert response.status_code == 201, response.text
    assert response.json() == {"total": 10_000, "imported": 10_000, "duplicates": 0, "near_duplicates": 0}
    assert prompt_count(db, project) == 10_000
    db.expire_all()
    assert db.scalar(select(Prompt.text).where(Prompt.project_id == project.id, Prompt.external_id == "p9999")) \
        == "Prompt number 9999"

    # The lookups of existing hashes and ids go in chunks; 1,200 lines span three of them.
    again = b"".join(body.splitlines(keepends=True)[-1_200:]) + b'{"prompt": "One more", "id": "p10000"}\n'
    response = post_prompts(client, project.id, again, {**admin_headers, **NDJSON})
    assert response.json() == {"total": 1_201, "imported": 1, "duplicates": 1_200, "near_duplicates": 0}
    clash = b"".join(body.splitlines(keepends=True)[:1_000]) + b'{"prompt": "Not number 9999", "id": "p9999"}\n'
    response = post_prompts(client, project.id, clash, {**admin_headers, **NDJSON})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"line": 1_001, "message": "id 'p9999' already belongs to a different prompt in this project"}]
    assert prompt_count(db, project) == 10_001


# Listing.

def test_listing_pages_through_every_prompt_once_in_id_order(client, db, admin, admin_headers, project):
    other = make_project(db, admin)
    post_prompts(client, other.id, jsonl({"prompt": "elsewhere"}), {**admin_headers, **NDJSON})
    post_prompts(client, project.id, jsonl(*({"prompt": f"prompt {i}", "id": f"e{i}"} for i in range(23))),
                 {**admin_headers, **NDJSON})
    expected = [p.id for p in stored(db, project)]
    assert len(expected) == 23

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor is not None else {})}
        response = client.get(f"/api/v1/projects/{project.id}/prompts", params=params, headers=admin_headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 5
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == seen[-1]
    assert seen == expected
    assert pages == 5
    first = client.get(f"/api/v1/projects/{project.id}/prompts", params={"limit": 1}, headers=admin_headers).json()
    assert first["items"][0]["text"] == "prompt 0"
    assert first["items"][0]["external_id"] == "e0"
    assert first["items"][0]["kind"] == "text"
    assert first["items"][0]["project_id"] == project.id


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 1001}, "limit"), ({"limit": 0}, "limit"), ({"cursor": -1}, "cursor"), ({"cursor": 2**31}, "cursor"),
])
def test_listing_limit_and_cursor_are_bounded(client, db, admin_headers, project, params, field):
    response = client.get(f"/api/v1/projects/{project.id}/prompts", params=params, headers=admin_headers)
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def test_listing_is_for_members_only(client, db, admin, admin_headers):
    member, outsider = make_user(db, Role.labeler), make_user(db, Role.labeler)
    project = make_project(db, admin, labeler_ids=[member.id])
    post_prompts(client, project.id, jsonl({"prompt": "visible"}), {**admin_headers, **NDJSON})

    outside = client.get(f"/api/v1/projects/{project.id}/prompts", headers=bearer(make_token(db, outsider)))
    assert outside.status_code == 404
    assert outside.json()["error"]["code"] == "project_not_found"

    inside = client.get(f"/api/v1/projects/{project.id}/prompts", headers=bearer(make_token(db, member)))
    assert inside.status_code == 200
    assert [p["text"] for p in inside.json()["items"]] == ["visible"]
    assert inside.json()["next_cursor"] is None


# The upload form.

def upload(client, project_id: int, csrf: str | None, filename: str, body: bytes, content_type: str = "text/plain"):
    data = {"csrf_token": csrf} if csrf is not None else {}
    return client.post(f"/projects/{project_id}/prompts/upload", data=data,
                       files={"file": (filename, body, content_type)})


def test_upload_form_imports_and_shows_the_counts(client, db, admin, project):
    csrf = login(client, admin)
    body = jsonl({"prompt": "First upload", "id": "u1"}, {"prompt": "Second upload"}, {"prompt": "First upload"})
    response = upload(client, project.id, csrf, "batch.jsonl", body)

    assert response.status_code == 200, response.text
    page = BeautifulSoup(response.text, "html.parser")
    result = page.select_one("#import-result")
    assert result is not None
    assert " ".join(result.get_text().split()) == \
        "Imported 2 of 3 prompts; 1 duplicates and 0 near-duplicates skipped."
    assert page.select_one("#import-error") is None
    assert page.select_one("#stat-prompts").get_text(strip=True) == "2"
    assert [td.get_text(strip=True) for td in page.select("td.prompt-text")] == ["Second upload", "First upload"]
    rows = stored(db, project)
    assert [(p.text, p.source) for p in rows] == [("First upload", "upload:batch.jsonl"),
                                                  ("Second upload", "upload:batch.jsonl")]


def test_upload_form_accepts_csv(client, db, admin, project):
    csrf = login(client, admin)
    response = upload(client, project.id, csrf, "batch.csv", b"prompt,topic\nFrom a spreadsheet,misc\n", "text/csv")
    assert response.status_code == 200, response.text
    assert BeautifulSoup(response.text, "html.parser").select_one("#import-result") is not None
    assert [(p.text, p.meta) for p in stored(db, project)] == [("From a spreadsheet", {"topic": "misc"})]


def test_upload_form_bad_file_lists_the_lines_and_writes_nothing(client, db, admin, project):
    csrf = login(client, admin)
    body = b'{"prompt": "fine"}\n{"prompt": ""}\n{"prompt": "fine too"}\n{bad json\n'
    response = upload(client, project.id, csrf, "bad.jsonl", body)

    assert response.status_code == 422
    page = BeautifulSoup(response.text, "html.parser")
    error = page.select_one("#import-error")
    assert error is not None
    assert page.select_one("#import-result") is None
    items = [li.get_text(strip=True) for li in error.select("li")]
    assert items[0] == "line 2: prompt is empty"
    assert items[1].startswith("line 4: not valid JSON")
    assert len(items) == 2
    assert page.select_one("#stat-prompts").get_text(strip=True) == "0"
    assert prompt_count(db) == 0


@pytest.mark.parametrize("filename", ["page.html", "prompts.jsonl.exe", "noextension"])
def test_upload_form_refuses_other_file_types(client, db, admin, project, filename):
    csrf = login(client, admin)
    response = upload(client, project.id, csrf, filename, jsonl({"prompt": "would be fine"}), "text/html")
    assert response.status_code == 422
    error = BeautifulSoup(response.text, "html.parser").select_one("#import-error")
    assert error is not None
    assert f"{filename!r} is not a prompt file" in error.get_text()
    assert prompt_count(db) == 0


def test_upload_form_without_a_file_is_refused(client, db, admin, project):
    csrf = login(client, admin)
    response = client.post(f"/projects/{project.id}/prompts/upload", data={"csrf_token": csrf},
                           files={"other": ("x.txt", b"", "text/plain")})
    assert response.status_code == 422
    assert "choose a file" in BeautifulSoup(response.text, "html.parser").select_one("#import-error").get_text()
    assert prompt_count(db) == 0


@pytest.mark.parametrize("csrf", [None, "wrong-token"])
def test_upload_form_without_the_csrf_token_is_refused(client, db, admin, project, csrf):
    login(client, admin)
    response = upload(client, project.id, csrf, "batch.jsonl", jsonl({"prompt": "forged"}))
    assert response.status_code == 403
    page = BeautifulSoup(response.text, "html.parser")
    assert "CSRF token" in page.get_text()
    assert prompt_count(db) == 0


def test_upload_form_is_for_admins_only(client, db, admin):
    labeler = make_user(db, Role.labeler)
    project = make_project(db, admin, labeler_ids=[labeler.id])
    csrf = login(client, labeler)
    response = upload(client, project.id, csrf, "batch.jsonl", jsonl({"prompt": "from a labeler"}))
    assert response.status_code == 403
    assert "only admins" in BeautifulSoup(response.text, "html.parser").get_text()
    assert prompt_count(db) == 0


def test_labelers_do_not_see_the_upload_form(client, db, admin):
    labeler = make_user(db, Role.labeler)
    project = make_project(db, admin, labeler_ids=[labeler.id])
    login(client, labeler)
    page = BeautifulSoup(client.get(f"/projects/{project.id}").text, "html.parser")
    assert page.select_one("h1").get_text(strip=True) == project.name
    assert page.select_one("#import-file") is None


# The command line.

def run_cli(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFLAB_DATABASE_URL": url, "PREFLAB_DATA_DIR": str(tmp_path / "cli-data"),
           "PREFLAB_SECRET_KEY": TEST_SECRET}
    return subprocess.run([sys.executable, "-m", "app.cli", "import-prompts", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def project_in(url: str, **fields) -> tuple[int, str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            project = make_project(session, make_admin(session), **fields)
            return project.id, project.name
    finally:
        engine.dispose()


def texts_in(url: str, project_id: int) -> list[str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(Prompt.text).where(Prompt.project_id == project_id).order_by(Prompt.id)))
    finally:
        engine.dispose()


def test_cli_imports_a_file(fresh_database_url, tmp_path):
    project_id, name = project_in(fresh_database_url)
    file = tmp_path / "prompts.jsonl"
    file.write_bytes(jsonl({"prompt": "From the shell"}, {"prompt": "Also from the shell", "id": "s2"},
                           {"prompt": "From the shell"}))

    result = run_cli(fresh_database_url, tmp_path, str(project_id), str(file))
    assert result.returncode == 0, result.stderr
    assert f"imported 2 of 3 prompts into {name!r}; skipped 1 duplicates and 0 near-duplicates" in result.stdout
    assert texts_in(fresh_database_url, project_id) == ["From the shell", "Also from the shell"]

    # By name, a CSV file, and everything already there.
    csv_file = tmp_path / "more.csv"
    csv_file.write_text("prompt\nFrom the shell\nA CSV prompt\n")
    result = run_cli(fresh_database_url, tmp_path, name, str(csv_file))
    assert result.returncode == 0, result.stderr
    assert f"imported 1 of 2 prompts into {name!r}; skipped 1 duplicates" in result.stdout
    assert texts_in(fresh_database_url, project_id) == ["From the shell", "Also from the shell", "A CSV prompt"]


def test_cli_bad_file_fails_with_line_numbers_and_writes_nothing(fresh_database_url, tmp_path):
    project_id, _name = project_in(fresh_database_url)
    file = tmp_path / "bad.jsonl"
    file.write_bytes(b'{"prompt": "fine"}\n{"prompt": ""}\n{"prompt": "fine too"}\nnot json\n')

    result = run_cli(fresh_database_url, tmp_path, str(project_id), str(file))
    assert result.returncode == 1
    assert "  line 2: prompt is empty" in result.stderr
    assert "  line 4: not valid JSON" in result.stderr
    assert "error: 2 bad lines, nothing imported" in result.stderr
    assert "imported" not in result.stdout
    assert texts_in(fresh_database_url, project_id) == []

    file.write_bytes(jsonl({"prompt": "fine"}))
    result = run_cli(fresh_database_url, tmp_path, "no-such-project", str(file))
    assert result.returncode == 1
    assert "error: no project with id or name 'no-such-project'" in result.stderr
    assert texts_in(fresh_database_url, project_id) == []
