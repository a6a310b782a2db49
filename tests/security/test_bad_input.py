"""Bad input: each is answered by a 4xx naming the problem, and nothing is written."""

import asyncio
import json
import tracemalloc

import pytest
from bs4 import BeautifulSoup
from itsdangerous import TimestampSigner
from base64 import b64encode
from sqlalchemy import func, select

from app.deps import password_fingerprint
from app.labeling.models import Judgment
from app.projects.models import Project
from app.prompts.models import Prompt
from app.users.models import ApiToken, Scope, User
from tests.conftest import TEST_SECRET
from tests.factories import bearer, login, make_token
from tests.security.world import World, build_world, dump


@pytest.fixture
def world(db, settings) -> World:
    return build_world(db, settings)


@pytest.fixture
def admin_h(world) -> dict[str, str]:
    return bearer(world.tokens["admin_token"])


@pytest.fixture
def label_h(world) -> dict[str, str]:
    return bearer(world.tokens["label"])


def _error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    message = error["message"] + json.dumps(error.get("details"))
    for word in words:
        assert word in message, message
    return error


NOT_OFFERED = [  # (query, the field named in the answer)
    ("/api/v1/users?is_admin=true", "is_admin"), ("/api/v1/users?password_hash=x", "password_hash"),
    ("/api/v1/projects/{project_a}/judgments?rationale=x", "rationale"),
    ("/api/v1/projects/{project_a}/comparisons?chosen=1", "chosen"),
    ("/api/v1/projects/{project_a}/export?labeler=2", "labeler"), ("/api/v1/jobs?payload=x", "payload"),
    ("/api/v1/projects/{project_a}/prompts?text=x", "text"),
]
NOT_ALLOWED = [
    ("/api/v1/users?role=root", "role"), ("/api/v1/jobs?state=hacked", "state"),
    ("/api/v1/projects/{project_a}/prompts?kind=evil", "kind"), ("/api/v1/users?cursor=-1", "cursor"),
    ("/api/v1/users?limit=100000", "limit"), ("/api/v1/projects/{project_a}/judgments?labeler_id=x", "labeler_id"),
]


def test_filters_on_fields_or_values_that_are_not_allowed(client, world, admin_h):
    for query, field in NOT_OFFERED + NOT_ALLOWED:
        _error(client.get(query.format(**world.ids), headers=admin_h), 422, field)
    # The same lists with what is offered answer 200, so the refusals above are about the filter.
    assert client.get("/api/v1/users?role=admin&limit=10", headers=admin_h).status_code == 200
    assert client.get(f"/api/v1/projects/{world.ids['project_a']}/export?format=pairs&ties=keep",
                      headers=admin_h).status_code == 200


def _session_cookie(key: str, data: dict) -> str:
    # What Starlette's SessionMiddleware writes: base64 JSON, signed with itsdangerous' TimestampSigner.
    return TimestampSigner(key).sign(b64encode(json.dumps(data).encode())).decode()


def test_session_cookie_signed_with_another_key_is_anonymous(client, db, world):
    admin = db.get(User, world.ids["admin"])
    data = {"uid": admin.id, "pwf": password_fingerprint(admin), "csrf": "c"}
    client.cookies.set("preflab_session", _session_cookie(TEST_SECRET, data))
    assert client.get("/api/v1/me").json()["username"] == "root"  # the real key: this cookie works

    before = dump(db)
    for key in ("changeme", "preflab-dev-mode-key-not-for-production", TEST_SECRET[:-1] + "X"):
        client.cookies.set("preflab_session", _session_cookie(key, data))
        assert client.get("/api/v1/me").status_code == 401
        forged = client.post("/api/v1/projects", json={"name": "x"}, headers={"X-CSRF-Token": "c"})
        assert forged.status_code in (401, 403)
        page = client.get("/admin/users", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert dump(db) == before


def test_session_of_a_changed_password_is_anonymous(client, db, world):
    admin = db.get(User, world.ids["admin"])
    client.cookies.set("preflab_session", _session_cookie(TEST_SECRET, {"uid": admin.id, "pwf": "0" * 16}))
    assert client.get("/api/v1/me").status_code == 401


def _prompt_count(db) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(Prompt))


HOSTILE_UPLOADS = [
    ("evil.html", b"<html><script>alert(1)</script></html>", "text/html"),
    ("evil.svg", b"<svg onload=alert(1)></svg>", "image/svg+xml"),
    ("evil.js", b"alert(1)", "text/javascript"),
    ("evil.txt", b"<html><body><script>alert(1)</script></body></html>", "text/plain"),
    ("evil.jsonl", b"<script>alert(1)</script>\n", "text/html"),
]


def test_html_or_script_upload_is_refused(client, db, world):
    csrf = login(client, db.get(User, world.ids["admin"]))
    before = _prompt_count(db)
    for name, content, ctype in HOSTILE_UPLOADS:
        response = client.post(f"/projects/{world.ids['project_a']}/prompts/upload", headers={"X-CSRF-Token": csrf},
                               files={"file": (name, content, ctype)})
        assert response.status_code == 422, name
        alert = BeautifulSoup(response.text, "html.parser").select_one("[role=alert]").get_text()
        assert (name in alert and "not a prompt file" in alert) or "bad line" in alert, alert
        api = client.post(f"/api/v1/projects/{world.ids['project_a']}/prompts", content=content,
                          headers={"content-type": ctype, "X-CSRF-Token": csrf})
        assert api.status_code == 422 and api.json()["error"]["code"] == "invalid_prompt_file", name
    assert _prompt_count(db) == before


@pytest.mark.parametrize("path", [
    "/static/../app/config.py", "/static/%2e%2e/app/config.py", "/static/%2e%2e%2fapp%2fconfig.py",
    "/static/..%2fapp%2fconfig.py", "/static/%252e%252e/app/config.py", "/static/%252e%252e%252fapp%252fconfig.py",
    "/static/css/..%2f..%2f..%2fapp%2fconfig.py", "/static/..\\app\\config.py", "/static/%2e%2e%5capp%5cconfig.py",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/css/%00app.css",
])
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # no database involved
def test_traversal_on_static_paths_finds_nothing(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert "get_settings" not in response.text and "root:" not in response.text


@pytest.mark.parametrize("path", ["/api/v1/snapshots/..%2f1/download", "/api/v1/snapshots/%2e%2e/download",
                                  "/api/v1/snapshots/1%00/download"])
def test_traversal_on_download_paths_finds_nothing(client, world, admin_h, path):
    assert client.get(path, headers=admin_h).status_code in (404, 422)


def _judgment_count(db) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(Judgment))


def _submit(client, world, headers, body, key="bad-1"):
    return client.post(f"/api/v1/assignments/{world.ids['lease_submit_a']}/judgment", json=body,
                       headers={**headers, "Idempotency-Key": key})


def test_ranks_that_are_not_a_ranking_of_the_tasks_completions(client, db, world, label_h):
    ids = world.completions["lease_submit_a"]
    other = world.completions["task_b"][0]
    before = _judgment_count(db)
    bad = {
        "missing": {str(ids[0]): 1, str(ids[1]): 2},
        "extra": {**{str(c): i + 1 for i, c in enumerate(ids)}, str(other): 4},
        "foreign": {str(ids[0]): 1, str(ids[1]): 2, str(other): 3},
        "zero": {str(ids[0]): 0, str(ids[1]): 1, str(ids[2]): 2},
        "negative": {str(ids[0]): -1, str(ids[1]): 1, str(ids[2]): 2},
        "too_large": {str(ids[0]): 1, str(ids[1]): 2, str(ids[2]): 4},
        "not_ids": {"a": 1, "b": 2, "c": 3},
        "empty": {},
    }
    for name, ranks in bad.items():
        response = _submit(client, world, label_h, {"ranks": ranks}, key=f"bad-{name}")
        assert 400 <= response.status_code < 500 and response.status_code != 409, (name, response.text)
        assert "error" in response.json()
    assert _judgment_count(db) == before
    ok = _submit(client, world, label_h, {"ranks": world.ranks("lease_submit_a")}, key="good")
    assert ok.status_code == 201


def test_likert_outside_the_scale(client, db, world, label_h):
    ranks = world.ranks("lease_submit_a")
    first = next(iter(ranks))
    before = _judgment_count(db)
    for likert in ("0", "8", "NaN", "Infinity", "-Infinity", "-1", "3.5", "1e309", '"seven"', "[]"):
        body = '{"ranks": %s, "ratings": {"%s": {"likert": %s}}}' % (json.dumps(ranks), first, likert)
        response = client.post(f"/api/v1/assignments/{world.ids['lease_submit_a']}/judgment", content=body,
                               headers={**label_h, "Idempotency-Key": "likert", "content-type": "application/json"})
        assert response.status_code == 422, (likert, response.text)
        assert "likert" in response.text.lower(), (likert, response.text)
    assert _judgment_count(db) == before


NUL = "evil\x00text"


def _nul_requests(world: World) -> list[tuple[str, str, dict]]:
    """(method, url, json body) with a NUL in one text field each; the caller is the admin or the labeler."""
    a = world.ids
    ranks = world.ranks("lease_submit_a")
    first = next(iter(ranks))
    return [
        ("label", "POST", f"/api/v1/assignments/{a['lease_submit_a']}/judgment", {"ranks": ranks, "rationale": NUL}),
        ("label", "POST", f"/api/v1/assignments/{a['lease_submit_a']}/judgment",
         {"ranks": ranks, "ratings": {first: {"note": NUL}}}),
        ("label", "POST", f"/api/v1/assignments/{a['lease_submit_a']}/judgment", {"ranks": ranks, "demonstration": NUL}),
        ("label", "POST", f"/api/v1/assignments/{a['lease_submit_a']}/judgment",
         {"ranks": ranks, "prompt_flags": [NUL]}),
        ("label", "POST", f"/api/v1/assignments/{a['lease_skip_a']}/skip", {"reason": NUL}),
        ("label", "POST", "/api/v1/tokens", {"name": NUL, "scope": "read"}),
        ("label", "PUT", "/api/v1/me/password", {"current_password": NUL, "new_password": "long-enough-1"}),
        ("admin_token", "POST", "/api/v1/projects", {"name": NUL}),
        ("admin_token", "POST", "/api/v1/projects", {"name": "p", "guidelines": NUL}),
        ("admin_token", "POST", "/api/v1/projects", {"name": "p", "description": NUL}),
        ("admin_token", "POST", "/api/v1/projects",
         {"name": "p", "rating_schema": {"flags": [{"key": "f", "label": NUL}]}}),
        ("admin_token", "PATCH", f"/api/v1/projects/{a['project_a']}", {"guidelines": NUL}),
        ("admin_token", "POST", f"/api/v1/projects/{a['project_a']}/prompts", [{"prompt": NUL}]),
        ("admin_token", "POST", f"/api/v1/projects/{a['project_a']}/prompts", [{"prompt": "ok", "id": NUL}]),
        ("admin_token", "POST", "/api/v1/users", {"username": "nul", "password": "long-enough-1", "display_name": NUL}),
        ("admin_token", "POST", "/api/v1/users", {"username": NUL, "password": "long-enough-1"}),
        ("admin_token", "POST", f"/api/v1/judgments/{a['judgment_a']}/exclude", {"reason": NUL}),
        ("admin_token", "POST", "/api/v1/models", {"name": NUL, "source": "/models/x"}),
    ]


def test_nul_bytes_in_every_text_field(client, db, world):
    before = dump(db)
    for who, method, url, body in _nul_requests(world):
        response = client.request(method, url, json=body, headers={**bearer(world.tokens[who]),
                                                                   "Idempotency-Key": "nul"})
        _error(response, 422, "NUL")
    assert dump(db) == before


def test_nul_bytes_in_forms_queries_and_uploads(client, db, world):
    csrf = login(client, db.get(User, world.ids["admin"]))
    headers = {"X-CSRF-Token": csrf}
    before = dump(db)
    form = client.post("/projects/new", data={"name": NUL, "k": "3", "labels_per_task": "1"}, headers=headers)
    assert form.status_code == 422 and "NUL" in form.text
    upload = client.post(f"/projects/{world.ids['project_a']}/prompts/upload", headers=headers,
                         files={"file": ("p.jsonl", b'{"prompt": "a\\u0000b"}\n', "application/x-ndjson")})
    assert upload.status_code == 422 and "NUL" in upload.text
    raw = client.post(f"/api/v1/projects/{world.ids['project_a']}/prompts", content="prompt\na\x00b\n".encode(),
                      headers={**headers, "content-type": "text/csv"})
    _error(raw, 422, "NUL")
    query = client.get(f"/api/v1/projects/{world.ids['project_a']}/prompts?source_user=a%00b", headers=headers)
    _error(query, 422, "NUL")
    assert dump(db) == before


def test_an_escaped_backslash_before_u0000_is_text_not_nul(client, db, world, admin_h):
    # JSON "\\u0000" is a backslash followed by "u0000": plain text, allowed.
    response = client.post(f"/api/v1/projects/{world.ids['project_a']}/prompts",
                           headers={**admin_h, "content-type": "application/json"},
                           content=b'[{"prompt": "print(\'\\\\u0000\')"}]')
    assert response.status_code == 201, response.text
    db.rollback()
    assert db.scalar(select(Prompt.text).order_by(Prompt.id.desc()).limit(1)) == "print('\\u0000')"


def test_ten_thousand_form_fields(client, db, world):
    csrf = login(client, db.get(User, world.ids["admin"]))
    before = dump(db)
    fields = [("csrf_token", csrf)] + [(f"f{i}", "x") for i in range(10_000)]
    for path in ("/projects/new", "/admin/users", f"/projects/{world.ids['project_a']}/edit"):
        response = client.post(path, content="&".join(f"{k}={v}" for k, v in fields).encode(),
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 400, (path, response.status_code)
        assert "maximum number of fields is 1000" in response.text.lower()
    multipart = client.post("/projects/new", headers={"X-CSRF-Token": csrf},
                            files={f"f{i}": (None, "x") for i in range(10_000)})
    assert multipart.status_code == 400 and "maximum number of fields is 1000" in multipart.text.lower()
    assert dump(db) == before


def test_fifty_megabyte_body_is_refused_early_without_ballooning(app, client, db, world, admin_h):
    url = f"/api/v1/projects/{world.ids['project_a']}/prompts"
    before = _prompt_count(db)
    declared = client.post(url, content=b"{}", headers={
        **admin_h, "content-type": "application/x-ndjson", "content-length": str(50 * 1024 * 1024)})
    _error(declared, 413, "8,388,608 bytes")

    # No Content-Length: the limit must hold while the body streams in. The app is called directly
    # (TestClient would buffer the whole body first), so what is measured is the server's memory.
    chunk = (b'{"prompt": "' + b"x" * 65_000 + b'"}\n')
    tracemalloc.start()
    status, body, sent = call_asgi(app, url, [chunk] * (50 * 1024 * 1024 // len(chunk)), admin_h)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert status == 413 and b"PREFLAB_MAX_BODY_MB" in body
    assert sent <= 8 * 1024 * 1024 + len(chunk)  # reading stopped at the limit, not at 50 MB
    # The import route holds what it has read (8.7 MiB measured): memory follows the limit, not the body.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while refusing a 50 MB body (limit 8 MiB)"
    assert _prompt_count(db) == before


def call_asgi(app, path: str, chunks: list[bytes], headers: dict[str, str],
              content_type: bytes = b"application/x-ndjson") -> tuple[int, bytes, int]:
    """POST a body in these chunks straight to the ASGI app: (status, response body, bytes the app read)."""
    sent = 0
    pending = list(chunks)
    messages: list[dict] = []

    async def receive() -> dict:
        nonlocal sent
        part = bytes(bytearray(pending.pop(0))) if pending else b""  # a new object, as a server's would be
        sent += len(part)
        return {"type": "http.request", "body": part, "more_body": bool(pending)}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", content_type),
                         *((k.lower().encode(), v.encode()) for k, v in headers.items())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:]), sent


def test_nul_escape_split_across_chunks_is_still_seen(app, db, admin_h):
    body = b'{"name": "a\\u0000b"}'
    for cut in range(len(b'{"name": "a'), len(b'{"name": "a\\u0000') + 1):  # around the escape
        status, answer, _sent = call_asgi(app, "/api/v1/projects", [body[:cut], body[cut:]], admin_h,
                                          content_type=b"application/json")
        assert status == 422 and b"nul_character" in answer, (cut, answer)
    status, answer, _sent = call_asgi(app, "/api/v1/projects", [b'{"name": "a\\\\u00', b'00b"}'], admin_h,
                                      content_type=b"application/json")
    assert status == 201, answer  # an escaped backslash, then the text "u0000"
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Project).where(Project.name == "a\\u0000b")) == 1


def test_labeler_walking_another_projects_ids_gets_nothing(client, db, world):
    member, outsider = db.get(User, world.ids["member"]), db.get(User, world.ids["outsider"])
    headers = bearer(make_token(db, member, Scope.label))
    make_token(db, outsider, Scope.label)
    outsider_tokens = set(db.scalars(select(ApiToken.id).where(ApiToken.user_id == outsider.id)))
    secrets = ("project-b", "rationale b", "outsider", "unsampled b", "policy-a", "policy-b")
    # (method, path, the kind of id walked); B's ids of that kind must all be refused.
    routes = [
        ("GET", "/api/v1/projects/{}", "project"), ("GET", "/api/v1/projects/{}/prompts", "project"),
        ("GET", "/projects/{}", "project"), ("GET", "/projects/{}/label", "project"),
        ("POST", "/api/v1/projects/{}/assignments", "project"), ("GET", "/api/v1/judgments?project_id={}", "project"),
        ("GET", "/api/v1/judgments/{}", "judgment"), ("PUT", "/api/v1/judgments/{}", "judgment"),
        ("POST", "/api/v1/assignments/{}/heartbeat", "lease"), ("POST", "/api/v1/assignments/{}/skip", "lease"),
        ("POST", "/api/v1/assignments/{}/judgment", "lease"), ("GET", "/api/v1/tasks/{}/review", "task"),
        ("GET", "/api/v1/snapshots/{}", "snapshot"), ("GET", "/api/v1/jobs/{}", "job"),
        ("POST", "/api/v1/tokens/{}/revoke", "token"),
    ]
    own_tokens = set(db.scalars(select(ApiToken.id).where(ApiToken.user_id == member.id)))
    walked = 0
    for method, template, kind in routes:
        if kind == "token":
            theirs, both = outsider_tokens, outsider_tokens | own_tokens
        else:
            theirs = {v for k, v in world.ids.items() if k.startswith(kind) and k.endswith("_b")}
            both = theirs | {v for k, v in world.ids.items() if k.startswith(kind) and k.endswith("_a")}
        assert theirs, kind
        # In sequence across both projects' ids of this kind, and a few past either end.
        for ident in range(max(1, min(both) - 3), max(both) + 4):
            if kind == "token" and ident in own_tokens:
                continue  # revoking them would work, and end this walk
            body = {"ranks": {}, "reason": "x"} if method in ("POST", "PUT") else None
            before = dump(db) if ident in theirs else None
            response = client.request(method, template.format(ident), headers={**headers, "Idempotency-Key": "w"},
                                      json=body, follow_redirects=False)
            leaked = [s for s in secrets if s in response.text]
            assert not leaked, (method, template, ident, leaked, response.text[:300])
            if before is not None:
                walked += 1
                assert response.status_code in (403, 404), (method, template, ident, response.status_code)
                assert dump(db) == before, (method, template, ident)
    assert walked >= 15
    assert client.get(f"/api/v1/projects/{world.ids['project_a']}", headers=headers).status_code == 200
