"""Training and scoring jobs through the worker: snapshots in, registered model versions and scores out."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import make_engine
from app.export.models import DatasetSnapshot
from app.jobs.models import Job, JobKind, JobMetric, JobState
from app.jobs.training import queue_scoring, queue_training
from app.jobs.worker import run_one
from app.labeling.models import Task, TaskCompletion
from app.labeling.service import queue_sampling
from app.models.models import CompletionScore, ModelRole, ModelVersion
from app.models.service import promote
from app.projects.models import Project
from app.prompts.models import Completion, Prompt
from app.training.score import score_completions
from tests.conftest import TEST_SECRET
from tests.training.helpers import labeled_project

FAST = {"max_steps": 3, "epochs": 2, "batch_judgments": 2, "max_length": 64, "eval_fraction": 0.34}


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Trainers in other tests of this process (TRL's) may have set accelerate's global state otherwise."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def engine(fresh_database_url):
    engine = make_engine(fresh_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def worker_settings(fresh_database_url, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=fresh_database_url, secret_key=TEST_SECRET,
                    job_lease_seconds=30)


def _run(engine, settings, job_id: int) -> Job:
    assert run_one(engine, settings, "test-worker") is True
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.succeeded, job.error
        return job


def test_reward_dpo_and_score_jobs_register_what_they_make(engine, worker_settings, tiny_model_dir):
    with Session(engine) as session:
        labeled = labeled_project(session, str(tiny_model_dir))
        project_id, policy_id = labeled.project.id, labeled.policy.id
        rm_job = queue_training(session=session, project=labeled.project, kind=JobKind.train_reward,
                                params={**FAST, "lr": 1e-3, "name": "length RM"}, created_by_id=labeled.admin.id,
                                settings=worker_settings)
        session.commit()
        rm_job_id, snapshot_id = rm_job.id, rm_job.payload["snapshot_id"]
        snapshot = session.get(DatasetSnapshot, snapshot_id)
        assert (snapshot.format, snapshot.counts["rows"]) == ("rankings", 6)

    done = _run(engine, worker_settings, rm_job_id)
    with Session(engine) as session:
        reward = session.scalar(select(ModelVersion).where(ModelVersion.created_by_job_id == rm_job_id))
        assert (reward.role, reward.name, reward.parent_id, reward.dataset_snapshot_id) == (
            ModelRole.reward, "length RM", policy_id, snapshot_id)
        path = Path(reward.path)
        assert path == worker_settings.policy_dir / "trained" / f"job{rm_job_id}" / "attempt1"
        assert (path / "config.json").exists() and list(path.glob("*.safetensors"))
        assert done.result["model_version_id"] == reward.id and done.result["snapshot_id"] == snapshot_id
        assert done.result["train_judgments"] + done.result["eval_judgments"] == 6
        assert done.result["eval_judgments"] == 2  # a third of the six prompts, each judged once
        steps = list(session.scalars(select(JobMetric.step).where(JobMetric.job_id == rm_job_id,
                                                                   JobMetric.name == "loss").order_by(JobMetric.step)))
        assert steps == [1, 2, 3]
        assert "eval/accuracy" in reward.metrics and 0 <= reward.metrics["eval/accuracy"] <= 1
        reward_id, reward_path = reward.id, reward.path

        project = session.get(Project, project_id)
        score_job = queue_scoring(session=session, project=project, params={"reward_model_id": reward_id},
                                  created_by_id=None)
        session.commit()
        score_job_id = score_job.id
    scored = _run(engine, worker_settings, score_job_id)
    with Session(engine) as session:
        completions = session.scalar(select(func.count()).select_from(Completion))
        assert scored.result["scored"] == completions == 18
        scores = dict(session.execute(select(CompletionScore.completion_id, CompletionScore.score)
                                      .where(CompletionScore.model_version_id == reward_id)).all())
        assert len(scores) == 18 and len(set(scores.values())) > 1
        project = session.get(Project, project_id)
        again = queue_scoring(session=session, project=project, params={"reward_model_id": reward_id},
                              created_by_id=None)
        session.commit()
        again_id = again.id
    assert _run(engine, worker_settings, again_id).result["scored"] == 0  # nothing new to score

    # Best-of-N: 5 distinct draws per prompt, the reward model keeps the 3 best, best first.
    with Session(engine) as session:
        project = session.get(Project, project_id)
        project.sampling_params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 5, "best_of": 5,
                                   "reward_model_id": reward_id}
        first_two = list(session.scalars(select(Prompt.id).order_by(Prompt.id)))[:2]
        [best_of] = queue_sampling(session=session, project=project, prompt_ids=first_two)
        session.commit()
        best_of_id = best_of.id
    sampled = _run(engine, worker_settings, best_of_id)
    assert sampled.result["tasks"] == 2 and sampled.result["draws"] >= 10
    with Session(engine) as session:
        for task in session.scalars(select(Task).where(Task.id > 6)):
            rows = session.execute(
                select(Completion.text, Completion.sampling_params, CompletionScore.score)
                .join(TaskCompletion, TaskCompletion.completion_id == Completion.id)
                .join(CompletionScore, CompletionScore.completion_id == Completion.id)
                .where(TaskCompletion.task_id == task.id, CompletionScore.model_version_id == reward_id)
                .order_by(TaskCompletion.position)).all()
            assert len(rows) == 3 and [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
            assert rows[0][1]["best_of"] == 5 and rows[0][1]["reward_model_id"] == reward_id
            # The kept scores are what the reward model gives these texts.
            [again] = score_completions(reward_path=str(Path(reward_path)), prompts=[
                [{"role": "user", "content": session.get(Prompt, task.prompt_id).text}]],
                completions=[[r[0] for r in rows]])
            assert again == pytest.approx([r[2] for r in rows], abs=1e-4)
            drawn = session.scalar(select(func.count()).select_from(Completion).where(
                Completion.prompt_id == task.prompt_id, Completion.model_version_id == policy_id))
            assert drawn == 3 + 3  # the labeled task's three and the three kept (the rest are not stored)
        project = session.get(Project, project_id)
        project.sampling_params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 5}
        session.commit()

    with Session(engine) as session:
        project = session.get(Project, project_id)
        dpo_job = queue_training(session=session, project=project, kind=JobKind.train_dpo,
                                 params={**FAST, "snapshot_id": snapshot_id, "lr": 1e-4},
                                 created_by_id=None, settings=worker_settings)
        session.commit()
        dpo_job_id = dpo_job.id
        assert session.scalar(select(func.count()).select_from(DatasetSnapshot)) == 1  # the same snapshot
    _run(engine, worker_settings, dpo_job_id)
    with Session(engine) as session:
        dpo = session.scalar(select(ModelVersion).where(ModelVersion.created_by_job_id == dpo_job_id))
        assert (dpo.role, dpo.parent_id, dpo.dataset_snapshot_id) == (ModelRole.dpo, policy_id, snapshot_id)
        assert "eval/rewards/accuracies" in dpo.metrics
        names = set(session.scalars(select(JobMetric.name).where(JobMetric.job_id == dpo_job_id)))
        assert {"loss", "rewards/accuracies", "rewards/margins", "eval/rewards/accuracies"} <= names

        # Promoted, the DPO result samples the next round from its folder.
        project = session.get(Project, project_id)
        promote(model=dpo, project=project)
        [sample] = queue_sampling(session=session, project=project,
                                  prompt_ids=list(session.scalars(select(Prompt.id).order_by(Prompt.id)))[:2])
        session.commit()
        sample_id, dpo_id = sample.id, dpo.id
    assert _run(engine, worker_settings, sample_id).result["tasks"] == 2
    with Session(engine) as session:
        versions = set(session.scalars(select(Completion.model_version_id).join(
            TaskCompletion, TaskCompletion.completion_id == Completion.id).join(Task, Task.id == TaskCompletion.task_id)
            .where(Task.id > 8)))
        assert versions == {dpo_id}


LONG = {"max_steps": 400, "epochs": 100, "batch_judgments": 1, "max_length": 48, "eval_fraction": 0.0}


def _wait_for_metrics(engine, job_id: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if session.scalar(select(func.count()).select_from(JobMetric).where(JobMetric.job_id == job_id)):
                return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} recorded no step within {timeout} s")


def _queued(engine, model_dir, settings, kind: JobKind, *, prompts: int, params: dict) -> int:
    """A labeled project (K=2) on the tiny model and one training job queued on it; the job's id."""
    with Session(engine) as session:
        labeled = labeled_project(session, str(model_dir), prompts=prompts, k=2)
        job = queue_training(session=session, project=labeled.project, kind=kind, params=params,
                             created_by_id=None, settings=settings)
        session.commit()
        return job.id


def test_a_worker_killed_mid_training_retries_cleanly_into_exactly_one_model(engine, fresh_database_url,
                                                                             worker_settings, tiny_model_dir):
    """A real `preflab worker` is SIGKILLed mid-run; the retry registers one model from its own folder."""
    job_id = _queued(engine, tiny_model_dir, worker_settings, JobKind.train_dpo, prompts=4,
                     params={**LONG, "max_steps": 40})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLAB_")}
    env.update(PREFLAB_DATABASE_URL=fresh_database_url, PREFLAB_DATA_DIR=str(worker_settings.data_dir),
               PREFLAB_SECRET_KEY=TEST_SECRET, PREFLAB_READY_TASKS="0", PREFLAB_JOB_LEASE_SECONDS="5")
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        _wait_for_metrics(engine, job_id)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    first = worker_settings.policy_dir / "trained" / f"job{job_id}" / "attempt1"
    with Session(engine) as session:
        killed = session.get(Job, job_id)
        assert (killed.state, killed.attempt) == (JobState.running, 1)  # killed mid-run, nothing registered
        assert session.scalar(select(func.count()).select_from(ModelVersion).where(
            ModelVersion.created_by_job_id == job_id)) == 0
    assert first.is_dir()
    time.sleep(5.5)  # the dead worker's lease runs out
    done = _run(engine, worker_settings, job_id)
    assert done.attempt == 2
    with Session(engine) as session:
        [model] = session.scalars(select(ModelVersion).where(ModelVersion.created_by_job_id == job_id))
        assert model.path == str(first.parent / "attempt2") and (Path(model.path) / "config.json").exists()
        steps = list(session.scalars(select(JobMetric.step).where(JobMetric.job_id == job_id,
                                                                   JobMetric.name == "loss").order_by(JobMetric.step)))
        assert steps == list(range(1, 41))  # the second attempt's curve, from step 1, once
    assert not first.exists()  # the killed attempt's folder was never registered, and is gone


def test_cancel_stops_training_mid_run_and_registers_nothing(engine, worker_settings, tiny_model_dir):
    from app.jobs import service as queue

    worker_settings.job_lease_seconds = 6  # heartbeats (and so the cancel check) every 2 s
    # 40 judgments x 100 epochs: far more steps than the seconds before the cancel allow (a packed step of
    # the tiny model takes milliseconds; 400 steps once finished before the cancel was seen).
    job_id = _queued(engine, tiny_model_dir, worker_settings, JobKind.train_reward, prompts=40,
                     params={**LONG, "max_steps": 4000})
    worker = threading.Thread(target=run_one, args=(engine, worker_settings, "w"))
    worker.start()
    _wait_for_metrics(engine, job_id)
    deadline = time.monotonic() + 30
    with Session(engine) as session:
        while session.get(Job, job_id).eta_at is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the next heartbeat brings the progress and the ETA
            session.expire_all()
        running = session.get(Job, job_id)
        assert running.state == JobState.running and running.eta_at > running.heartbeat_at
        assert running.message.startswith("reward model: step ") and " left" in running.message
        assert 0 < running.progress < 1
        queue.cancel(session=session, job_id=job_id)
        session.commit()
    worker.join(timeout=60)
    assert not worker.is_alive()
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.cancelled
        steps = session.scalar(select(func.max(JobMetric.step)).where(JobMetric.job_id == job_id))
        assert 1 <= steps < 4000
        assert session.scalar(select(func.count()).select_from(ModelVersion).where(
            ModelVersion.created_by_job_id == job_id)) == 0
    assert not (worker_settings.policy_dir / "trained" / f"job{job_id}" / "attempt1").exists()
