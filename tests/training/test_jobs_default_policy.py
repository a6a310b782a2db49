"""The real default policy (SmolLM2-135M GGUF) through a DPO job in a `preflab worker` process."""

import os
import subprocess
import sys
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import make_engine
from app.jobs.models import Job, JobKind, JobState
from app.jobs.training import queue_training
from app.models.models import ModelRole, ModelVersion
from app.models.service import ensure_default_policy, promote
from tests.conftest import TEST_SECRET
from tests.policy.models import default_policy_file
from tests.training.helpers import labeled_project


def test_dpo_job_on_the_default_policy_saves_a_model_that_reloads_and_generates(tmp_path):
    gguf = default_policy_file()
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLAB_")}
    # Trained models go to this test's models folder; the base model row points at the bundled GGUF.
    env.update(PREFLAB_DATABASE_URL=url, PREFLAB_DATA_DIR=str(tmp_path), PREFLAB_SECRET_KEY=TEST_SECRET,
               PREFLAB_MODELS_DIR=str(tmp_path / "models"), PREFLAB_READY_TASKS="0")
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], env=env, check=True, capture_output=True)
    settings = Settings(data_dir=tmp_path, database_url=url, secret_key=TEST_SECRET, models_dir=tmp_path / "models")
    engine = make_engine(url)
    with Session(engine) as session:
        labeled = labeled_project(session, "unused", prompts=4, k=2)
        default = ensure_default_policy(session=session, models_dir=gguf.parent.parent)
        promote(model=default, project=labeled.project)
        job = queue_training(session=session, project=labeled.project, kind=JobKind.train_dpo, created_by_id=None,
                             settings=settings, params={"max_steps": 2, "batch_judgments": 2, "max_length": 48,
                                                        "eval_fraction": 0.25, "lr": 1e-5})
        session.commit()
        job_id, default_id = job.id, default.id
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 900  # about 60 s on a quiet machine; far longer on a shared, busy one
        while time.monotonic() < deadline:
            with Session(engine) as session:
                if session.get(Job, job_id).state not in (JobState.queued, JobState.running):
                    break
            time.sleep(0.5)
    finally:
        worker.terminate()  # the worker stops between jobs; one still training is killed
        try:
            _, log = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, log = worker.communicate()
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.succeeded, f"{job.state}: {job.error}\n{log[-3000:]}"
        model = session.scalar(select(ModelVersion).where(ModelVersion.created_by_job_id == job_id))
        assert (model.role, model.parent_id) == (ModelRole.dpo, default_id)
        assert model.metrics["steps"] == 2 and 0 <= model.metrics["eval/rewards/accuracies"] <= 1
        path = model.path
        assert path.startswith(str(tmp_path / "models" / "trained"))
    engine.dispose()
    # Saved from a GGUF-loaded model, the folder is a plain transformers model that generates.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = lm.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text, text
