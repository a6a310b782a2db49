"""The closed loop: simulated labelers rank, a reward model and a DPO policy train, the DPO policy samples again.

Everything goes through Preflab's API (in-process ASGI client) and its job queue (a worker thread):
a project with the default policy (SmolLM2-135M GGUF) samples K completions for the training prompts;
simulated labelers lease tasks and rank them by a hidden preference (shorter answers are better) with
noise; a train_reward job and a train_dpo job run on a snapshot of their judgments; a score job scores
the completions; the DPO model is promoted and samples the held-out prompts, which the old policy
sampled too. An oracle (the hidden preference without noise) compares every (new, old) pair of
completions of each held-out prompt: the win rate of the new policy should be clearly above 0.5.
Prints one JSON line last.
"""

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TOPICS = ["the moon", "volcanoes", "bread", "bicycles", "rain", "chess", "honey bees", "glass", "tides", "coffee",
          "maps", "owls", "salt", "kites", "clocks", "rivers", "paper", "ice", "copper", "whales", "tea", "bridges",
          "cotton", "lightning", "deserts", "music boxes", "ants", "lighthouses", "cheese", "comets", "wool", "tunnels",
          "olives", "compasses", "snow", "sailboats", "mushrooms", "candles", "trains", "rainbows"]
ASKS = ["Tell me about {}.", "What should a child know about {}?", "Write a few sentences about {}.",
        "Explain {} to a friend."]


def words(text: str) -> int:
    return len(text.split())


def oracle(a: str, b: str) -> float:
    """The hidden preference without noise: 1 if a is shorter, 0.5 on a tie, else 0."""
    return 1.0 if words(a) < words(b) else 0.5 if words(a) == words(b) else 0.0


class Labeler:
    """An API client that ranks by the hidden preference plus Gaussian noise (in words)."""

    def __init__(self, client: Any, token: str, noise: float, seed: int) -> None:
        self.client, self.headers, self.noise = client, {"Authorization": f"Bearer {token}"}, noise
        self.rng = random.Random(seed)

    def label_one(self, project_id: int) -> bool:
        lease = self.client.post(f"/api/v1/projects/{project_id}/assignments", headers=self.headers)
        if lease.status_code == 204:
            return False
        lease.raise_for_status()
        body = lease.json()
        noisy = {c["id"]: words(c["text"]) + self.rng.gauss(0, self.noise) for c in body["completions"]}
        order = sorted(noisy, key=noisy.get)
        ranks = {str(cid): place + 1 for place, cid in enumerate(order)}
        done = self.client.post(f"/api/v1/assignments/{body['id']}/judgment", json={"ranks": ranks},
                                headers={**self.headers, "Idempotency-Key": f"{body['id']}-{self.rng.random()}"})
        done.raise_for_status()
        return True


def wait_for(client: Any, headers: dict[str, str], job_ids: list[int], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [client.get(f"/api/v1/jobs/{i}", headers=headers).json() for i in job_ids]
        if all(j["state"] not in ("queued", "running") for j in jobs):
            bad = [j for j in jobs if j["state"] != "succeeded"]
            if bad:
                raise RuntimeError(f"job {bad[0]['id']} {bad[0]['state']}: {bad[0]['error']}")
            return jobs
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs {job_ids} still running after {timeout} s")
        time.sleep(0.5)


def texts_by_prompt(client: Any, headers: dict[str, str], project_id: int, model_id: int) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    cursor = None
    while True:
        params = {"limit": 500} if cursor is None else {"limit": 500, "cursor": cursor}
        page = client.get(f"/api/v1/projects/{project_id}/tasks", params=params, headers=headers).json()
        for task in page["items"]:
            for c in task["completions"]:
                if c["model_version_id"] == model_id:
                    found.setdefault(task["prompt_id"], []).append(c["text"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-prompts", type=int, default=16)
    parser.add_argument("--eval-prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--labelers", type=int, default=3)
    parser.add_argument("--noise", type=float, default=3.0, help="labelers' noise, in words (standard deviation)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dpo", default='{"lr": 1e-5, "beta": 0.1, "epochs": 3, "batch_judgments": 4, '
                                        '"max_length": 128, "eval_fraction": 0.15}')
    parser.add_argument("--rm", default='{"lr": 3e-5, "epochs": 1, "batch_judgments": 4, "max_length": 128, '
                                       '"eval_fraction": 0.15}')
    parser.add_argument("--model", default=None, help="default: the bundled SmolLM2 GGUF")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from app import migrate
    from app.config import Settings
    from app.db import make_engine
    from app.jobs.worker import run_worker
    from app.main import create_app
    from app.models.bundled import default_policy_path
    from app.models.service import ensure_default_policy
    from app.users.models import Role, Scope
    from app.users.service import create_token, create_user

    random.seed(args.seed)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="preflab-loop-"))
    models_dir = Settings().policy_dir
    url = f"sqlite:///{tmp / 'loop.db'}"
    # Trained models go to the throwaway folder; the default policy's row points at the bundled GGUF.
    settings = Settings(data_dir=tmp, database_url=url, secret_key="closed-loop-bench-" + "k" * 32,
                        models_dir=tmp / "models", ready_tasks=0, job_lease_seconds=600)
    migrate.upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        admin = create_user(session=session, username="admin", role=Role.admin, password="x" * 16)
        labelers = [create_user(session=session, username=f"labeler{i}", role=Role.labeler, password="x" * 16)
                    for i in range(args.labelers)]
        admin_token = create_token(session=session, user=admin, name="bench", scope=Scope.admin)[1]
        labeler_tokens = [create_token(session=session, user=u, name="bench", scope=Scope.label)[1] for u in labelers]
        if args.model:
            from app.models.schemas import ModelCreate
            from app.models.service import register_model

            policy = register_model(session=session, data=ModelCreate(name="policy", source=args.model))
        else:
            policy = ensure_default_policy(session=session, models_dir=models_dir)
        session.commit()
        old_id, labeler_ids = policy.id, [u.id for u in labelers]
    engine.dispose()
    source = args.model or str(default_policy_path(models_dir))

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(settings,), kwargs={"poll_seconds": 0.5, "stop": stop},
                              daemon=True)
    worker.start()
    figures: dict[str, Any] = {"policy": source, "k": args.k, "labelers": args.labelers, "noise_words": args.noise}
    timings: dict[str, float] = {}
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {admin_token}"}
        project = client.post("/api/v1/projects", headers=headers, json={
            "name": "closed loop", "k": args.k, "labels_per_task": 1, "labeler_ids": labeler_ids,
            "sampling_params": {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": args.max_new_tokens}}).json()
        pid = project["id"]
        client.post(f"/api/v1/models/{old_id}/promote", headers=headers, json={"project_id": pid, "sample": False})
        topics = random.sample(TOPICS, args.train_prompts + args.eval_prompts)
        prompts = [{"prompt": random.choice(ASKS).format(t), "id": f"p{i}"} for i, t in enumerate(topics)]
        body = "\n".join(json.dumps(p) for p in prompts[:args.train_prompts])
        client.post(f"/api/v1/projects/{pid}/prompts", headers={**headers, "Content-Type": "application/x-ndjson"},
                    content=body).raise_for_status()

        t = time.monotonic()
        job = client.post("/api/v1/jobs", headers=headers, json={"kind": "sample", "project_id": pid,
                                                                 "params": {"count": args.train_prompts}})
        job.raise_for_status()
        wait_for(client, headers, [j["id"] for j in client.get("/api/v1/jobs", headers=headers,
                                                                  params={"kind": "sample"}).json()["items"]], 3600)
        timings["sample_train_prompts_s"] = time.monotonic() - t

        t = time.monotonic()
        sims = [Labeler(client, tok, args.noise, args.seed + i) for i, tok in enumerate(labeler_tokens)]
        judged, busy = 0, True
        while busy:
            done = [s.label_one(pid) for s in sims]
            judged, busy = judged + sum(done), any(done)
        timings["labeling_s"] = time.monotonic() - t
        figures["judgments"] = judged

        t = time.monotonic()
        rm = client.post("/api/v1/jobs", headers=headers, json={"kind": "train_reward", "project_id": pid,
                                                                "params": json.loads(args.rm)})
        rm.raise_for_status()
        snapshot_id = rm.json()["payload"]["snapshot_id"]
        dpo = client.post("/api/v1/jobs", headers=headers, json={"kind": "train_dpo", "project_id": pid, "params": {
            **json.loads(args.dpo), "snapshot_id": snapshot_id, "name": "DPO round 1"}})
        dpo.raise_for_status()
        rm_job, dpo_job = wait_for(client, headers, [rm.json()["id"], dpo.json()["id"]], 3600)
        timings["train_s"] = time.monotonic() - t
        reward_id, new_id = rm_job["result"]["model_version_id"], dpo_job["result"]["model_version_id"]
        figures["reward_model"] = {k: rm_job["result"]["metrics"].get(k)
                                   for k in ("eval/accuracy", "accuracy", "loss", "steps", "pairs")}
        figures["dpo"] = {k: dpo_job["result"]["metrics"].get(k)
                          for k in ("eval/rewards/accuracies", "rewards/accuracies", "loss", "steps", "pairs")}

        t = time.monotonic()
        score = client.post("/api/v1/jobs", headers=headers, json={"kind": "score", "project_id": pid,
                                                                   "params": {"reward_model_id": reward_id}})
        [scored] = wait_for(client, headers, [score.json()["id"]], 3600)
        timings["score_s"] = time.monotonic() - t
        # How well the reward model's scores follow the hidden preference on the sampled completions.
        by_prompt: dict[int, list[tuple[float, str]]] = {}
        for task in client.get(f"/api/v1/projects/{pid}/tasks", headers=headers, params={"limit": 500}).json()["items"]:
            for c in task["completions"]:
                by_prompt.setdefault(task["prompt_id"], []).append((c["scores"][str(reward_id)], c["text"]))
        agree = [1.0 if (sa > sb) == (words(ta) < words(tb)) else 0.0
                 for rows in by_prompt.values() for i, (sa, ta) in enumerate(rows) for sb, tb in rows[i + 1:]
                 if words(ta) != words(tb)]
        figures["reward_model"]["oracle_pair_accuracy_on_all_completions"] = round(sum(agree) / len(agree), 4)
        figures["scored"] = scored["result"]["scored"]

        # Held-out prompts: the old policy samples them, then the promoted DPO policy does.
        body = "\n".join(json.dumps(p) for p in prompts[args.train_prompts:])
        client.post(f"/api/v1/projects/{pid}/prompts", headers={**headers, "Content-Type": "application/x-ndjson"},
                    content=body).raise_for_status()
        held_out = [p["id"] for p in client.get(f"/api/v1/projects/{pid}/prompts", headers=headers,
                                                params={"limit": 500}).json()["items"]][args.train_prompts:]
        t = time.monotonic()
        old_jobs = client.post("/api/v1/jobs", headers=headers, json={"kind": "sample", "project_id": pid,
                                                                      "params": {"prompt_ids": held_out}})
        wait_for(client, headers, [old_jobs.json()["id"]], 3600)
        promoted = client.post(f"/api/v1/models/{new_id}/promote", headers=headers,
                               json={"project_id": pid, "sample": False})
        assert promoted.json()["current_policy_id"] == new_id
        new_jobs = client.post("/api/v1/jobs", headers=headers, json={"kind": "sample", "project_id": pid,
                                                                      "params": {"prompt_ids": held_out}})
        wait_for(client, headers, [new_jobs.json()["id"]], 3600)
        timings["sample_held_out_both_s"] = time.monotonic() - t

        old = texts_by_prompt(client, headers, pid, old_id)
        new = texts_by_prompt(client, headers, pid, new_id)
        held = [p for p in held_out if p in old and p in new]
        wins = [oracle(a, b) for p in held for a in new[p] for b in old[p]]
        figures["held_out_prompts"] = len(held)
        figures["oracle_win_rate_new_over_old"] = round(sum(wins) / len(wins), 4)
        figures["mean_words_old"] = round(sum(words(x) for p in held for x in old[p]) / sum(len(old[p]) for p in held), 2)
        figures["mean_words_new"] = round(sum(words(x) for p in held for x in new[p]) / sum(len(new[p]) for p in held), 2)
    stop.set()
    worker.join(timeout=60)
    figures["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    figures["total_s"] = round(time.monotonic() - started, 1)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
