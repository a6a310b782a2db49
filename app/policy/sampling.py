"""The `sample` job: K distinct completions per prompt, stored with the task that shows them."""

import hashlib
import random
import time
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.jobs.worker import JobContext, JobError
from app.labeling.models import Task, TaskCompletion, TaskState
from app.models.models import ModelRole, ModelVersion
from app.models.service import store_scores
from app.policy.base import Policy, PolicyError, PromptSpec, Sample, SamplingParams
from app.projects.models import Project
from app.prompts.models import Completion, Prompt

MAX_ROUNDS = 4  # the first draw and up to three redraws for prompts short of K distinct completions
CHUNK = 8  # prompts per batched call; progress and the lease check come between chunks


def policy_for(model: ModelVersion, ctx: JobContext) -> Policy:
    """The sampling backend a registered model version names."""
    if model.backend == "openai":
        from app.policy.openai_backend import OpenAIPolicy

        key = model.config.get("api_key") or (
            ctx.settings.openai_api_key.get_secret_value() if ctx.settings.openai_api_key else None)
        return OpenAIPolicy(base_url=model.config["base_url"], model=model.config["model"], api_key=key,
                            timeout=ctx.settings.policy_timeout_seconds, max_retries=ctx.settings.policy_retries)
    if model.backend == "transformers":
        from app.policy.transformers_backend import load_policy

        return load_policy(model.path or model.source)
    raise PolicyError(f"model {model.id} has unknown backend {model.backend!r}")


def _key(text: str) -> str:
    # Completions that differ only in spacing look identical to a labeler.
    return " ".join(text.split())


def _draw(ctx: JobContext, policy: Policy, prompts: list[Prompt], project: Project,
          model: ModelVersion) -> tuple[dict[int, list[Sample]], int, int]:
    """Up to K (best-of-N: N) distinct completions per prompt, CHUNK prompts per batched call."""
    sp = project.sampling_params
    k = sp.get("best_of") or project.k
    found: dict[int, list[Sample]] = {p.id: [] for p in prompts}
    seen: dict[int, set[str]] = {p.id: set() for p in prompts}
    tokens = draws = 0
    for start in range(0, len(prompts), CHUNK):
        todo = prompts[start:start + CHUNK]
        where = f"prompts {start + 1}-{start + len(todo)} of {len(prompts)}"
        for round_ in range(MAX_ROUNDS):
            if not todo:
                break
            ctx.check()
            ctx.progress(start / len(prompts), f"{where}, round {round_ + 1}: sampling x{k} from {model.name}")
            n = max(k - len(found[p.id]) for p in todo) + (1 if round_ else 0)
            params = SamplingParams(n=n, temperature=sp["temperature"], top_p=sp["top_p"],
                                    max_new_tokens=sp["max_new_tokens"], seed=random.randrange(2**31))
            outputs = policy.sample([PromptSpec(text=p.text, messages=p.messages) for p in todo], params)
            for prompt, samples in zip(todo, outputs, strict=True):
                for sample in samples:
                    draws += 1
                    tokens += sample.token_count
                    key = _key(sample.text)
                    if key and key not in seen[prompt.id] and len(found[prompt.id]) < k:
                        seen[prompt.id].add(key)
                        found[prompt.id].append(sample)
            todo = [p for p in todo if len(found[p.id]) < k]
    return found, tokens, draws


def _best_of(ctx: JobContext, session: Session, project: Project, prompts: list[Prompt],
             found: dict[int, list[Sample]]) -> tuple[dict[int, list[Sample]], dict[int, list[float]]]:
    """Best-of-N: the project's reward model scores each prompt's draws; the K best are kept, best first."""
    from app.training.score import score_completions

    k = project.k
    reward = session.get(ModelVersion, project.sampling_params["reward_model_id"])
    if reward is None or reward.role != ModelRole.reward:
        raise JobError("the project's best-of-N reward model no longer exists")
    scored = [p for p in prompts if len(found[p.id]) >= k]
    if not scored:
        return found, {}
    ctx.check()
    ctx.progress(0.9, f"best-of-N: scoring {sum(len(found[p.id]) for p in scored)} completions with {reward.name}")
    values = score_completions(reward_path=reward.path or reward.source,
                               prompts=[PromptSpec(text=p.text, messages=p.messages).as_messages() for p in scored],
                               completions=[[s.text for s in found[p.id]] for p in scored])
    kept, scores = dict(found), {}
    for prompt, row in zip(scored, values, strict=True):
        best = sorted(range(len(row)), key=lambda i: -row[i])[:k]
        kept[prompt.id] = [found[prompt.id][i] for i in best]
        scores[prompt.id] = [float(row[i]) for i in best]
    return kept, scores


def run_sample_job(ctx: JobContext) -> dict[str, Any]:
    session, job = ctx.session, ctx.job
    started = time.monotonic()
    project = session.get(Project, job.project_id) if job.project_id else None
    model = session.get(ModelVersion, job.payload.get("model_version_id", 0))
    if project is None or model is None:
        raise JobError("the job's project or model version no longer exists")
    prompts = list(session.scalars(select(Prompt).where(
        Prompt.project_id == project.id, Prompt.id.in_(job.payload.get("prompt_ids", []))).order_by(Prompt.id)))
    sp = project.sampling_params
    ctx.progress(0.0, f"loading policy {model.name}")
    policy = policy_for(model, ctx)
    try:
        found, tokens, draws = _draw(ctx, policy, prompts, project, model)
    finally:
        close = getattr(policy, "close", None)  # HTTP backends hold a connection pool; local models stay cached
        if close is not None:
            close()
    k = project.k
    scores: dict[int, list[float]] = {}
    if sp.get("best_of"):
        found, scores = _best_of(ctx, session, project, prompts, found)
    ready = [p for p in prompts if len(found[p.id]) == k]
    if prompts and not ready:
        raise JobError(f"the policy gave fewer than {k} distinct completions for every prompt after "
                       f"{MAX_ROUNDS} rounds; raise the project's temperature")
    ctx.begin_writes()
    recorded = {"temperature": sp["temperature"], "top_p": sp["top_p"], "max_new_tokens": sp["max_new_tokens"],
                "backend": model.backend}
    if sp.get("best_of"):
        recorded.update(best_of=sp["best_of"], reward_model_id=sp["reward_model_id"])
    for prompt in ready:
        completion_ids = session.scalars(insert(Completion).returning(Completion.id, sort_by_parameter_order=True), [
            {"prompt_id": prompt.id, "model_version_id": model.id, "text": s.text,
             "text_hash": hashlib.sha256(s.text.encode()).hexdigest(), "token_count": s.token_count,
             "finish_reason": s.finish_reason, "sampling_params": recorded, "seed": s.extra.get("seed")}
            for s in found[prompt.id]]).all()
        task = Task(project_id=project.id, prompt_id=prompt.id, state=TaskState.open,
                    labels_needed=project.labels_per_task, labels_done=0)
        session.add(task)
        session.flush()
        session.execute(insert(TaskCompletion), [
            {"task_id": task.id, "completion_id": cid, "position": i} for i, cid in enumerate(completion_ids)])
        if prompt.id in scores:
            store_scores(session=session, model_version_id=sp["reward_model_id"], job_id=job.id,
                         scores=dict(zip(completion_ids, scores[prompt.id], strict=True)))
    seconds = time.monotonic() - started
    return {
        "tasks": len(ready), "completions": len(ready) * k, "draws": draws, "tokens": tokens,
        "incomplete_prompt_ids": [p.id for p in prompts if len(found[p.id]) < k],
        "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
    }
