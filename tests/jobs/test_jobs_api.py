"""Jobs, models and tasks over REST, and the sampling controls on the project page."""

from sqlalchemy import func, select

from app.jobs.models import Job, JobState
from app.labeling.models import Task, TaskCompletion
from app.models.models import ModelVersion
from app.prompts.models import Completion, Prompt
from app.prompts.service import import_prompts, validate_item
from app.users.models import Scope
from tests.factories import bearer, login, make_admin, make_project, make_token, make_user


def _setup(client, db, prompts: int = 3):
    admin = make_admin(db)
    headers = bearer(make_token(db, admin, Scope.admin))
    model = client.post("/api/v1/models", json={"name": "local", "backend": "transformers", "source": "/models/x"},
                        headers=headers)
    assert model.status_code == 201, model.text
    project = make_project(db, admin, k=2)
    items = [validate_item({"prompt": f"prompt number {i}"}, i) for i in range(prompts)]
    import_prompts(session=db, project=project, items=items, source="t", creator=admin)
    db.commit()
    return admin, headers, project, model.json()


def _count(db, model) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


def test_promote_queues_sampling_and_jobs_are_readable(client, db):
    _admin, headers, project, model = _setup(client, db)
    promoted = client.post(f"/api/v1/models/{model['id']}/promote", json={"project_id": project.id}, headers=headers)
    assert promoted.status_code == 200 and promoted.json()["current_policy_id"] == model["id"]
    jobs = client.get(f"/api/v1/jobs?project_id={project.id}", headers=headers).json()["items"]
    assert len(jobs) == 1
    job = jobs[0]
    assert (job["kind"], job["state"], job["progress"]) == ("sample", "queued", 0.0)
    assert job["payload"] == {"prompt_ids": sorted(db.scalars(select(Prompt.id))), "model_version_id": model["id"]}
    one = client.get(f"/api/v1/jobs/{job['id']}", headers=headers).json()
    assert one["id"] == job["id"] and one["error"] is None

    # Promoting again queues nothing twice: those prompts are already being sampled.
    client.post(f"/api/v1/models/{model['id']}/promote", json={"project_id": project.id}, headers=headers)
    assert _count(db, Job) == 1

    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_sample_more_by_count_and_by_prompt_ids(client, db):
    _admin, headers, project, model = _setup(client, db, prompts=20)
    client.post(f"/api/v1/models/{model['id']}/promote", json={"project_id": project.id, "sample": False},
                headers=headers)
    assert _count(db, Job) == 0
    by_count = client.post("/api/v1/jobs", json={"kind": "sample", "project_id": project.id, "params": {"count": 10}},
                           headers=headers)
    assert by_count.status_code == 201
    job = by_count.json()
    assert (job["kind"], job["state"], len(job["payload"]["prompt_ids"])) == ("sample", "queued", 10)
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=headers).json()["payload"] == job["payload"]
    first_ids = sorted(db.scalars(select(Prompt.id)))[:2]
    by_ids = client.post("/api/v1/jobs", json={"kind": "sample", "project_id": project.id,
                                               "params": {"prompt_ids": first_ids}}, headers=headers)
    assert by_ids.status_code == 201 and by_ids.json()["payload"]["prompt_ids"] == first_ids
    rest = client.post("/api/v1/jobs", json={"kind": "sample", "project_id": project.id, "params": {"count": 50}},
                       headers=headers)
    assert len(rest.json()["payload"]["prompt_ids"]) == 10  # the prompts not yet being sampled
    nothing = client.post("/api/v1/jobs", json={"kind": "sample", "project_id": project.id, "params": {"count": 1}},
                          headers=headers)
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_sample"
    assert _count(db, Job) == 3


def test_bad_job_requests_are_422_and_queue_nothing(client, db):
    _admin, headers, project, model = _setup(client, db)
    cases = [
        ({"kind": "sample", "project_id": project.id, "params": {}}, "invalid_params"),
        ({"kind": "sample", "project_id": project.id, "params": {"count": 0}}, "invalid_params"),
        ({"kind": "sample", "project_id": project.id, "params": {"count": 2}}, "no_policy"),
        ({"kind": "sample", "project_id": project.id, "params": {"prompt_ids": [999999]}}, None),
        ({"kind": "train_dpo", "project_id": project.id, "params": {}}, "no_policy"),
        ({"kind": "bake_bread", "project_id": project.id}, "invalid"),
    ]
    for body, code in cases:
        response = client.post("/api/v1/jobs", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        if code:
            assert response.json()["error"]["code"] == code, body
    assert client.post("/api/v1/jobs", json={"kind": "sample", "project_id": 987654, "params": {"count": 1}},
                       headers=headers).status_code == 404
    assert _count(db, Job) == 0


def test_models_api_masks_keys_and_checks_input(client, db):
    admin = make_admin(db)
    headers = bearer(make_token(db, admin, Scope.admin))
    created = client.post("/api/v1/models", json={"name": "vllm", "backend": "openai", "base_url": "http://gpu:8000/v1",
                                                  "model": "llama", "api_key": "sk-very-secret"}, headers=headers)
    assert created.status_code == 201
    assert created.json()["config"] == {"base_url": "http://gpu:8000/v1", "model": "llama", "api_key": "***"}
    listed = client.get("/api/v1/models", headers=headers)
    assert "sk-very-secret" not in listed.text
    db.expire_all()
    assert db.get(ModelVersion, created.json()["id"]).config["api_key"] == "sk-very-secret"
    for body in ({"name": "x", "backend": "openai", "model": "m"}, {"name": "x", "backend": "transformers"},
                 {"name": "x", "backend": "openai", "base_url": "ftp://x", "model": "m"}):
        assert client.post("/api/v1/models", json=body, headers=headers).status_code == 422
    assert client.get("/api/v1/models/424242", headers=headers).status_code == 404


def test_tasks_api_lists_completions_in_position_order(client, db):
    _admin, headers, project, model = _setup(client, db, prompts=1)
    prompt_id = db.scalar(select(Prompt.id))
    task = Task(project_id=project.id, prompt_id=prompt_id, labels_needed=2)
    db.add(task)
    db.flush()
    for position, text in enumerate(["second shown", "first"][::-1]):
        completion = Completion(prompt_id=prompt_id, model_version_id=model["id"], text=text, text_hash=text,
                                token_count=2, finish_reason="stop", sampling_params={}, seed=1)
        db.add(completion)
        db.flush()
        db.add(TaskCompletion(task_id=task.id, completion_id=completion.id, position=position))
    db.commit()
    body = client.get(f"/api/v1/projects/{project.id}/tasks", headers=headers).json()
    assert [c["text"] for c in body["items"][0]["completions"]] == ["first", "second shown"]
    assert body["items"][0]["labels_needed"] == 2 and body["next_cursor"] is None
    labeler = make_user(db)
    assert client.get(f"/api/v1/projects/{project.id}/tasks",
                      headers=bearer(make_token(db, labeler, Scope.label))).status_code == 403


def test_project_page_shows_policy_and_jobs_and_samples_more(client, db):
    admin, headers, project, model = _setup(client, db, prompts=12)
    client.post(f"/api/v1/models/{model['id']}/promote", json={"project_id": project.id, "sample": False},
                headers=headers)
    csrf = login(client, admin)
    response = client.post(f"/projects/{project.id}/sample", data={"count": "9", "csrf_token": csrf},
                           follow_redirects=True)
    assert response.status_code == 200
    from bs4 import BeautifulSoup

    page = BeautifulSoup(response.text, "html.parser")
    assert "local" in page.select_one("#current-policy").get_text()
    rows = page.select("#jobs tbody tr")
    assert len(rows) == 2 and all("queued" in r.get_text() for r in rows)
    assert client.post(f"/projects/{project.id}/sample", data={"count": "0", "csrf_token": csrf}).status_code == 422
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.queued)) == 2
