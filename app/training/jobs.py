"""The worker's training and scoring jobs: snapshot in, a registered model version (or scores) out.

A training attempt writes its model into a folder of its own (`trained/job<id>/attempt<n>` under the
models directory) and registers it in the transaction that marks the job succeeded: a worker killed
mid-run leaves at most an unregistered folder, which the next attempt deletes, and the registry ends
with exactly one model version per job (`created_by_job_id` is unique).
"""

import json
import shutil
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.export.models import DatasetSnapshot
from app.export.service import snapshot_chunks
from app.jobs.models import JobKind
from app.jobs.worker import JobContext, JobError
from app.models.models import CompletionScore, ModelRole, ModelVersion
from app.models.service import store_scores
from app.prompts.models import Completion, Prompt
from app.training.items import RankedItem, TrainingError, split_by_prompt

METRIC_FLUSH_SECONDS = 1.0  # curve points are committed at most this often (and at the end)
SCORE_CHUNK = 256  # completions per scoring call (each loads the reward model); the lease check comes between


def attempt_dir(models_dir: Path, job_id: int, attempt: int) -> Path:
    return models_dir / "trained" / f"job{job_id}" / f"attempt{attempt}"


def ranked_items(rows: Iterable[dict[str, Any]]) -> list[RankedItem]:
    """One RankedItem per judgment of a rankings export (completions in the task's order, ranks 1 = best)."""
    items = []
    for row in rows:
        completions = row["completions"]
        if len(completions) < 2:  # a flag filter can leave fewer than two: nothing to compare
            continue
        items.append(RankedItem(prompt=row["prompt_messages"], completions=[c["text"] for c in completions],
                                ranks=[c["rank"] for c in completions], prompt_id=row["prompt_id"],
                                judgment_id=row["judgment_id"]))
    return items


def snapshot_rows(session: Session, snapshot: DatasetSnapshot) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL snapshot, exactly as frozen."""
    pending = b""
    for chunk in snapshot_chunks(session=session, snapshot=snapshot):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


class StepRecorder:
    """The trainer's on_step: curve points into job_metric, progress and an ETA onto the job."""

    def __init__(self, ctx: JobContext, label: str) -> None:
        self.ctx, self.label = ctx, label
        self.pending: list[tuple[int, dict[str, float]]] = []
        self.written: set[tuple[int, str]] = set()
        self.started = time.monotonic()
        self.last_flush = self.started
        self.first_step_at: float | None = None
        self.first_step = 0

    def __call__(self, metrics: dict[str, Any]) -> None:
        step = int(metrics.get("step", 0))
        values = {k: float(v) for k, v in metrics.items()
                  if k not in ("step", "total_steps") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.pending.append((step, values))
        total = int(metrics.get("total_steps") or 0)
        now = time.monotonic()
        if self.first_step_at is None:
            # Timed from the first step on: model loading and reference log-probs are not steps.
            self.first_step_at, self.first_step = now, step
        eta_at, eta_text = None, ""
        if total and step > self.first_step:
            per_step = (now - self.first_step_at) / (step - self.first_step)
            left = per_step * (total - step)
            eta_at, eta_text = utcnow() + timedelta(seconds=left), f", about {_duration(left)} left"
        loss = values.get("loss")
        shown = f", loss {loss:.4f}" if loss is not None else ""
        if total and not any(k.startswith("eval/") for k in values):
            self.ctx.progress(min(step / total, 0.99), f"{self.label}: step {step} of {total}{shown}{eta_text}",
                              eta_at)
        if now - self.last_flush >= METRIC_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            points, self.pending = self._new_points(), []
            self.ctx.record_metrics(points)
        self.last_flush = time.monotonic()

    def _new_points(self) -> list[tuple[int, dict[str, float]]]:
        # A step can report twice (its training figures, then its eval figures, both with `epoch`):
        # one point per name and step, the first reported.
        points: dict[int, dict[str, float]] = {}
        for step, values in self.pending:
            for name, value in values.items():
                if (step, name) not in self.written:
                    self.written.add((step, name))
                    points.setdefault(step, {})[name] = value
        return sorted(points.items())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _model_path(model: ModelVersion) -> str:
    return model.path or model.source


def _train(ctx: JobContext, kind: JobKind) -> dict[str, Any]:
    from app.jobs.training import trainer_params_model

    session, job, settings = ctx.session, ctx.job, ctx.settings
    payload = job.payload
    snapshot = session.get(DatasetSnapshot, payload.get("snapshot_id", 0))
    base = session.get(ModelVersion, payload.get("base_model_id", 0))
    if snapshot is None or base is None:
        raise JobError("the job's dataset snapshot or base model no longer exists")
    params = trainer_params_model(kind).model_validate(payload["params"])
    ctx.progress(0.0, f"reading snapshot {snapshot.id}")
    items = ranked_items(snapshot_rows(session, snapshot))
    if len(items) < 2:
        raise JobError(f"snapshot {snapshot.id} holds {len(items)} ranking(s) of two or more completions; "
                       "training needs at least 2")
    train, held_out = split_by_prompt(items, params.eval_fraction, params.seed)
    base_id, base_name, base_path, snapshot_id = base.id, base.name, _model_path(base), snapshot.id
    session.rollback()  # no read transaction stays open while the model trains

    out = attempt_dir(settings.policy_dir, job.id, job.attempt)
    for stale in out.parent.glob("attempt*"):  # folders of earlier attempts were never registered
        shutil.rmtree(stale, ignore_errors=True)
    out.mkdir(parents=True)
    ctx.reset_metrics()
    label = "reward model" if kind == JobKind.train_reward else "DPO"
    recorder = StepRecorder(ctx, label)
    ctx.progress(0.0, f"{label}: loading {base_name}")
    try:
        if kind == JobKind.train_reward:
            from app.training.reward import train_reward_model

            metrics = train_reward_model(base_path=base_path, items=train, eval_items=held_out, out_dir=out,
                                         params=params, on_step=recorder, should_stop=ctx.check)
        else:
            from app.training.dpo import train_dpo

            metrics = train_dpo(base_path=base_path, items=train, eval_items=held_out, out_dir=out, params=params,
                                on_step=recorder, should_stop=ctx.check,
                                ref_cache_dir=settings.policy_dir / "trained" / "ref-cache",
                                cache_key=f"snapshot{snapshot_id}-model{base_id}")
        recorder.flush()
    except TrainingError as exc:  # what was asked cannot train (a bad model path, nothing to compare): no retry
        shutil.rmtree(out, ignore_errors=True)
        raise JobError(str(exc)) from exc
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    ctx.begin_writes()
    role = ModelRole.reward if kind == JobKind.train_reward else ModelRole.dpo
    model = ModelVersion(
        role=role, name=payload.get("name") or f"{label} from {base_name} (job {job.id})"[:200],
        backend="transformers", source=str(out), path=str(out), parent_id=base_id, created_by_job_id=job.id,
        dataset_snapshot_id=snapshot_id, metrics=_json_safe(metrics),
        config={"params": payload["params"], "snapshot_id": snapshot_id, "base_model_id": base_id,
                "train_judgments": len(train), "eval_judgments": len(held_out)})
    session.add(model)
    session.flush()
    return {"model_version_id": model.id, "role": role.value, "path": str(out), "snapshot_id": snapshot_id,
            "train_judgments": len(train), "eval_judgments": len(held_out), "metrics": model.metrics}


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(metrics, default=float))


def run_train_reward_job(ctx: JobContext) -> dict[str, Any]:
    return _train(ctx, JobKind.train_reward)


def run_train_dpo_job(ctx: JobContext) -> dict[str, Any]:
    return _train(ctx, JobKind.train_dpo)


def run_score_job(ctx: JobContext) -> dict[str, Any]:
    """Score the project's completions with a reward model (those it has not scored yet, unless rescore)."""
    from app.training.score import score_completions

    session, job = ctx.session, ctx.job
    reward = session.get(ModelVersion, job.payload.get("reward_model_id", 0))
    if reward is None or reward.role != ModelRole.reward:
        raise JobError("the job's reward model no longer exists")
    query = (select(Completion.id, Completion.text, Prompt.text, Prompt.messages)
             .join(Prompt, Prompt.id == Completion.prompt_id)
             .where(Prompt.project_id == job.project_id).order_by(Completion.prompt_id, Completion.id))
    if not job.payload.get("rescore"):
        scored = select(CompletionScore.completion_id).where(CompletionScore.model_version_id == reward.id)
        query = query.where(Completion.id.not_in(scored))
    groups: list[tuple[list[dict[str, str]], list[tuple[int, str]]]] = []  # (prompt, its completions)
    last_prompt = None
    for cid, text, prompt_text, messages, prompt_id in session.execute(query.add_columns(Prompt.id)):
        if prompt_id != last_prompt:
            groups.append((messages or [{"role": "user", "content": prompt_text}], []))
            last_prompt = prompt_id
        groups[-1][1].append((cid, text))
    reward_id, reward_path = reward.id, _model_path(reward)
    session.rollback()
    total = sum(len(found) for _prompt, found in groups)
    scores: dict[int, float] = {}
    started = time.monotonic()
    start = 0
    while start < len(groups):
        # Whole prompts per call (a prompt's completions share its tokens), about SCORE_CHUNK completions.
        end, size = start, 0
        while end < len(groups) and (size == 0 or size + len(groups[end][1]) <= SCORE_CHUNK):
            size += len(groups[end][1])
            end += 1
        ctx.check()
        ctx.progress(len(scores) / total, f"scoring completions {len(scores) + 1}-{len(scores) + size} of {total}")
        chunk = groups[start:end]
        values = score_completions(reward_path=reward_path, prompts=[prompt for prompt, _found in chunk],
                                   completions=[[text for _cid, text in found] for _prompt, found in chunk])
        for (_prompt, found), row_scores in zip(chunk, values, strict=True):
            scores.update({cid: score for (cid, _text), score in zip(found, row_scores, strict=True)})
        start = end
    ctx.begin_writes()
    store_scores(session=session, model_version_id=reward_id, scores=scores, job_id=job.id)
    mean = sum(scores.values()) / len(scores) if scores else None
    return {"reward_model_id": reward_id, "scored": len(scores), "mean_score": mean,
            "seconds": round(time.monotonic() - started, 3)}
