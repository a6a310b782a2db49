"""Training and scoring jobs over the API and on the pages: checked params, snapshots, scores, best-of-N."""

from bs4 import BeautifulSoup
from sqlalchemy import func, select

from app.export.models import DatasetSnapshot
from app.jobs.models import Job, JobKind, JobMetric, JobState
from app.models.models import CompletionScore, ModelRole, ModelVersion
from app.prompts.models import Completion
from app.users.models import Scope
from tests.factories import bearer, login, make_admin, make_project, make_token
from tests.training.helpers import labeled_project


def _count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def _reward_model(db, parent: ModelVersion, job: Job | None = None) -> ModelVersion:
    model = ModelVersion(role=ModelRole.reward, name="rm", backend="transformers", source="/m/rm", path="/m/rm",
                         parent_id=parent.id, created_by_job_id=job.id if job else None, config={},
                         metrics={"eval/accuracy": 0.875, "pairs": 12})
    db.add(model)
    db.commit()
    return model


def test_training_job_params_are_checked_and_nothing_is_written_on_error(client, db):
    labeled = labeled_project(db, "/models/tiny")
    headers = bearer(make_token(db, labeled.admin, Scope.admin))
    pid = labeled.project.id
    other = client.post("/api/v1/projects/{}/snapshots".format(pid), json={"format": "pairs"}, headers=headers)
    assert other.status_code == 201
    empty = make_project(db, labeled.admin, k=3)
    cases = [
        ({"lr": -1}, "params.lr"),
        ({"learning_rate": 1e-5}, "params.learning_rate"),
        ({"beta": "strong"}, "params.beta"),
        ({"snapshot_id": 987654}, "params.snapshot_id"),
        ({"snapshot_id": other.json()["id"]}, "params.snapshot_id"),
        ({"base_model_id": 987654}, "params.base_model_id"),
    ]
    for params, field in cases:
        response = client.post("/api/v1/jobs", json={"kind": "train_dpo", "project_id": pid, "params": params},
                               headers=headers)
        assert response.status_code == 422, (params, response.text)
        assert field in response.json()["error"]["message"], (params, response.json())
    nothing = client.post("/api/v1/jobs", json={"kind": "train_reward", "project_id": empty.id,
                                                "params": {"base_model_id": labeled.policy.id}}, headers=headers)
    assert nothing.status_code == 422 and nothing.json()["error"]["code"] == "not_enough_data"
    assert "0 judgment(s)" in nothing.json()["error"]["message"]
    bad_score = client.post("/api/v1/jobs", json={"kind": "score", "project_id": pid,
                                                  "params": {"reward_model_id": labeled.policy.id}}, headers=headers)
    assert bad_score.status_code == 422 and bad_score.json()["error"]["code"] == "not_a_reward_model"
    no_model = client.post("/api/v1/jobs", json={"kind": "score", "project_id": pid, "params": {}}, headers=headers)
    assert no_model.status_code == 422 and "params.reward_model_id" in no_model.json()["error"]["message"]
    assert _count(db, Job) == 0
    assert _count(db, DatasetSnapshot) == 1  # the pairs snapshot made above, no other


def test_a_training_job_freezes_a_snapshot_and_names_its_base_model(client, db):
    labeled = labeled_project(db, "/models/tiny")
    headers = bearer(make_token(db, labeled.admin, Scope.admin))
    created = client.post("/api/v1/jobs", json={"kind": "train_dpo", "project_id": labeled.project.id,
                                                "params": {"beta": 0.2, "max_steps": 5, "name": "round 2"}},
                          headers=headers)
    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["kind"], job["state"], job["eta_at"]) == ("train_dpo", "queued", None)
    payload = job["payload"]
    assert (payload["base_model_id"], payload["name"]) == (labeled.policy.id, "round 2")
    assert payload["params"]["beta"] == 0.2 and payload["params"]["max_steps"] == 5
    assert payload["params"]["lr"] > 0 and payload["params"]["epochs"] == 1  # the defaults, recorded
    snapshot = client.get(f"/api/v1/snapshots/{payload['snapshot_id']}", headers=headers).json()
    assert snapshot["format"] == "rankings" and snapshot["counts"]["rows"] == 6
    assert snapshot["filters"]["include_excluded"] is False
    again = client.post("/api/v1/jobs", json={"kind": "train_reward", "project_id": labeled.project.id,
                                              "params": {"snapshot_id": payload["snapshot_id"]}}, headers=headers)
    assert again.status_code == 201 and again.json()["payload"]["snapshot_id"] == payload["snapshot_id"]
    assert _count(db, DatasetSnapshot) == 1


def test_best_of_needs_n_at_least_k_and_a_reward_model(client, db):
    labeled = labeled_project(db, "/models/tiny")
    headers = bearer(make_token(db, labeled.admin, Scope.admin))
    reward = _reward_model(db, labeled.policy)
    url = f"/api/v1/projects/{labeled.project.id}"
    base = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 32}
    for sampling, code in [({"best_of": 6}, "invalid"), ({"best_of": 2, "reward_model_id": reward.id}, "invalid_best_of"),
                           ({"best_of": 6, "reward_model_id": labeled.policy.id}, "not_a_reward_model")]:
        response = client.patch(url, json={"sampling_params": {**base, **sampling}}, headers=headers)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, response.text
    ok = client.patch(url, json={"sampling_params": {**base, "best_of": 6, "reward_model_id": reward.id}},
                      headers=headers)
    assert ok.status_code == 200 and ok.json()["sampling_params"]["best_of"] == 6
    db.expire_all()
    assert labeled.project.sampling_params == {**base, "best_of": 6, "reward_model_id": reward.id}


def test_admins_see_reward_scores_with_the_tasks(client, db):
    labeled = labeled_project(db, "/models/tiny", prompts=2, k=2)
    headers = bearer(make_token(db, labeled.admin, Scope.admin))
    reward = _reward_model(db, labeled.policy)
    completions = list(db.scalars(select(Completion).order_by(Completion.id)))
    db.add_all(CompletionScore(completion_id=c.id, model_version_id=reward.id, score=i / 4)
               for i, c in enumerate(completions[:3]))
    db.commit()
    tasks = client.get(f"/api/v1/projects/{labeled.project.id}/tasks", headers=headers).json()["items"]
    scores = {c["id"]: c["scores"] for t in tasks for c in t["completions"]}
    assert scores == {completions[0].id: {str(reward.id): 0.0}, completions[1].id: {str(reward.id): 0.25},
                      completions[2].id: {str(reward.id): 0.5}, completions[3].id: {}}


def _page(client, path: str) -> BeautifulSoup:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return BeautifulSoup(response.text, "html.parser")


def test_job_page_shows_progress_curves_and_cancels(client, db):
    admin = make_admin(db)
    labeled = labeled_project(db, "/models/tiny", prompts=2, k=2)
    job = Job(kind=JobKind.train_reward, project_id=labeled.project.id, payload={"snapshot_id": 5, "params": {}},
              state=JobState.running, attempt=1, progress=0.25, message="reward model: step 5 of 20, loss 0.5")
    db.add(job)
    db.flush()
    db.add_all(JobMetric(job_id=job.id, name=name, step=step, value=value)
               for step in range(1, 6) for name, value in (("loss", 1 / step), ("accuracy", 0.5 + step / 20)))
    db.add(JobMetric(job_id=job.id, name="eval/accuracy", step=5, value=0.75))
    db.commit()
    csrf = login(client, admin)
    soup = _page(client, f"/jobs/{job.id}")
    assert soup.select_one("#job-state").get_text(" ", strip=True).startswith("running")
    assert soup.select_one("#job-progress")["value"] == "0.2500"
    assert soup.select_one("#job-message").get_text() == "reward model: step 5 of 20, loss 0.5"
    charts = soup.select("#job-charts svg")
    assert [c.find("title").get_text() for c in charts] == ["Loss", "Pairwise accuracy"]
    assert len(charts[0].select("circle")) == 5 and len(charts[1].select("polyline")) == 1
    assert "eval/accuracy" in charts[1].get_text()  # the held-out point is a second series
    latest = {row.find_all("td")[0].get_text(): row.find_all("td")[2].get_text()
              for row in soup.select("#job-metrics tbody tr")}
    assert latest == {"accuracy": "0.75", "eval/accuracy": "0.75", "loss": "0.2"}
    assert not [s for s in soup.find_all("script") if not s.get("src")]  # strict CSP: no inline script
    form = soup.select_one("#cancel-form")
    assert form["action"] == f"/jobs/{job.id}/cancel"
    done = client.post(form["action"], data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job.id}"
    db.expire_all()
    assert db.get(Job, job.id).state == JobState.cancelled
    assert _page(client, f"/jobs/{job.id}").select_one("#cancel-form") is None


def test_model_page_lists_parents_and_metrics_and_promotes(client, db):
    labeled = labeled_project(db, "/models/tiny", prompts=2, k=2)
    job = Job(kind=JobKind.train_dpo, project_id=labeled.project.id, payload={}, state=JobState.succeeded)
    db.add(job)
    db.flush()
    reward = _reward_model(db, labeled.policy)
    dpo = ModelVersion(role=ModelRole.dpo, name="dpo round 1", backend="transformers", source="/m/dpo",
                       path="/m/dpo", parent_id=labeled.policy.id, created_by_job_id=job.id, config={},
                       metrics={"eval/rewards/accuracies": 0.8125})
    db.add(dpo)
    db.commit()
    csrf = login(client, labeled.admin)
    soup = _page(client, "/models")
    rows = {row["id"]: row for row in soup.select("#models tbody tr")}
    assert list(rows) == [f"model-{dpo.id}", f"model-{reward.id}", f"model-{labeled.policy.id}"]
    dpo_row = rows[f"model-{dpo.id}"]
    assert dpo_row.select_one(".parent a")["href"] == f"#model-{labeled.policy.id}"
    assert dpo_row.select_one(f'a[href="/jobs/{job.id}"]') is not None
    assert "0.8125" in dpo_row.select_one(".metrics").get_text()
    assert "policy of" in rows[f"model-{labeled.policy.id}"].get_text()
    assert rows[f"model-{reward.id}"].select_one("form") is None  # a reward model is never a policy
    form = dpo_row.select_one("form.promote-form")
    promoted = client.post(form["action"], data={"csrf_token": csrf, "project_id": str(labeled.project.id),
                                                 "sample": "on"}, follow_redirects=False)
    assert promoted.status_code == 303
    db.expire_all()
    assert labeled.project.current_policy_id == dpo.id
    queued = list(db.scalars(select(Job).where(Job.kind == JobKind.sample)))
    assert queued and all(j.payload["model_version_id"] == dpo.id for j in queued)
