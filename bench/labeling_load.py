"""Labeling under load: simulated labelers over HTTP on loopback against PostgreSQL.

Each labeler loops lease -> submit for a fixed time, without pause; 10% of submissions are sent twice
at once (a double click) and 5% are sent again after a simulated timeout (a retry). Prints one JSON
line: judgments/s, p50/p95 latency of both calls (per HTTP request, repeats included), and counts of lost, duplicated, over-collected
and half-written judgments (all must be 0). Only `lost` needs the clients (what the server
acknowledged, by Idempotency-Key and judgment id); the others are counted in the database.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid

import throwaway
from sqlalchemy import create_engine, insert, select
from sqlalchemy.orm import Session

import app.models_registry  # noqa: F401
from app.labeling.models import Judgment, Task, TaskCompletion
from app.labeling.service import integrity_report
from app.models.models import ModelRole, ModelVersion
from app.projects.schemas import ProjectCreate
from app.projects.service import create_project
from app.prompts.models import Completion, Prompt
from app.users.models import Role, Scope
from app.users.service import create_token, create_user



def seed(url: str, labelers: int, tasks: int, k: int, per_task: int) -> tuple[int, list[str]]:
    engine = create_engine(url)
    with Session(engine) as db:
        admin = create_user(session=db, username="admin", role=Role.admin, password="bench-password")
        users = [create_user(session=db, username=f"labeler{i}", role=Role.labeler, password="bench-password")
                 for i in range(labelers)]
        project = create_project(session=db, creator=admin, data=ProjectCreate(
            name="load", k=k, labels_per_task=per_task, labeler_ids=[u.id for u in users]))
        model = ModelVersion(role=ModelRole.policy, name="bench", source="bench", config={}, metrics={})
        db.add(model)
        db.flush()
        prompt_ids = db.scalars(insert(Prompt).returning(Prompt.id, sort_by_parameter_order=True), [
            {"project_id": project.id, "kind": "text", "text": f"prompt {i}", "content_hash": f"{i}", "meta": {},
             "source": "bench"} for i in range(tasks)]).all()
        completion_ids = db.scalars(insert(Completion).returning(Completion.id, sort_by_parameter_order=True), [
            {"prompt_id": pid, "model_version_id": model.id, "text": f"answer {j} to prompt {pid}", "text_hash": "x",
             "token_count": 5, "finish_reason": "stop", "sampling_params": {}, "seed": j}
            for pid in prompt_ids for j in range(k)]).all()
        task_ids = db.scalars(insert(Task).returning(Task.id, sort_by_parameter_order=True), [
            {"project_id": project.id, "prompt_id": pid, "labels_needed": per_task, "state": "open", "labels_done": 0}
            for pid in prompt_ids]).all()
        db.execute(insert(TaskCompletion), [
            {"task_id": tid, "completion_id": completion_ids[i * k + j], "position": j}
            for i, tid in enumerate(task_ids) for j in range(k)])
        tokens = [create_token(session=db, user=u, name="bench", scope=Scope.label)[1] for u in users]
        db.commit()
        project_id = project.id
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # Statistics as autovacuum keeps them on a live database; without them a freshly loaded project's
        # planner guesses table sizes and hash-joins the whole completion table on every lease.
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return project_id, tokens


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (uvicorn --workers forks them), from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on this machine (the server is local in this benchmark)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdecimal():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, _, tail = f.read().rpartition(")")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if head.partition("(")[2] in ("postgres", "postmaster"):
            fields = tail.split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Answer:
    def __init__(self, status_code: int, body: bytes, ms: float = 0.0) -> None:
        self.status_code, self.text, self.ms = status_code, body.decode(errors="replace"), ms

    def json(self):
        return json.loads(self.text)


async def post(client, url: str, headers: dict, body: dict | None = None) -> Answer:
    # aiohttp, not httpx: the load generator shares the two cores with the server, so it must be light.
    t0 = time.perf_counter()
    try:
        async with client.post(url, headers=headers, json=body) as response:
            return Answer(response.status, await response.read(), (time.perf_counter() - t0) * 1000)
    except (OSError, asyncio.TimeoutError) as exc:  # no answer (aiohttp's errors are OSErrors): not acknowledged
        return Answer(0, f"{type(exc).__name__}: {exc}".encode(), (time.perf_counter() - t0) * 1000)


async def labeler(client, token: str, project_id: int, until: float, stats: dict) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < until:
        leased = await post(client, f"/api/v1/projects/{project_id}/assignments", headers)
        stats["lease_ms"].append(leased.ms)
        if leased.status_code == 204:
            return
        if leased.status_code != 201:
            stats["errors"].append(f"lease {leased.status_code}: {leased.text[:200]}")
            continue
        a = leased.json()
        ids = [c["id"] for c in a["completions"]]
        random.shuffle(ids)
        body = {"ranks": {str(c): i + 1 for i, c in enumerate(ids)},
                "ratings": {str(ids[0]): {"likert": random.randint(1, 7), "flags": [], "note": ""}}}
        submit_headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
        url = f"/api/v1/assignments/{a['id']}/judgment"
        roll = random.random()
        if roll < 0.10:  # a double click: the same request twice at once
            responses = await asyncio.gather(post(client, url, submit_headers, body),
                                             post(client, url, submit_headers, body))
            stats["double_submits"] += 1
        else:
            responses = [await post(client, url, submit_headers, body)]
            if roll < 0.15:  # the client timed out and sends it again
                responses.append(await post(client, url, submit_headers, body))
                stats["retries"] += 1
        # Each request's own latency: a retry is a second request, not a longer first one.
        stats["submit_ms"].extend(r.ms for r in responses)
        ok = [r for r in responses if r.status_code == 201]
        if not ok:
            stats["errors"].append(f"submit {[r.status_code for r in responses]}: {responses[0].text[:200]}")
            continue
        if len({r.json()["id"] for r in ok}) != 1:
            stats["errors"].append("two submissions of one key were answered with different judgments")
        stats["acknowledged"][submit_headers["Idempotency-Key"]] = ok[0].json()["id"]


async def drive(base: str, project_id: int, tokens: list[str], seconds: float) -> dict:
    stats = {"lease_ms": [], "submit_ms": [], "errors": [], "acknowledged": {}, "double_submits": 0, "retries": 0}
    import aiohttp

    connector = aiohttp.TCPConnector(limit=len(tokens) * 2)
    async with aiohttp.ClientSession(base_url=base, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as client:
        start = time.monotonic()
        await asyncio.gather(*(labeler(client, t, project_id, start + seconds, stats) for t in tokens))
        stats["elapsed"] = time.monotonic() - start
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labelers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--labels-per-task", type=int, default=3)
    parser.add_argument("--web-workers", type=int, default=1)
    args = parser.parse_args()

    with throwaway.database() as url:
        project_id, tokens = seed(url, args.labelers, args.tasks, args.k, args.labels_per_task)
        with throwaway.server(url, workers=args.web_workers) as (base, process):
            cpu_before, db_before, client_before = cpu_seconds(process.pid), postgres_cpu_seconds(), time.process_time()
            stats = asyncio.run(drive(base, project_id, tokens, args.seconds))
            server_cpu = cpu_seconds(process.pid) - cpu_before
            db_cpu, client_cpu = postgres_cpu_seconds() - db_before, time.process_time() - client_before

        engine = create_engine(url)
        with Session(engine) as db:
            stored = dict(db.execute(select(Judgment.idempotency_key, Judgment.id)).all())
            report = integrity_report(session=db, project_id=project_id)
        engine.dispose()
        # Lost: acknowledged (a 201 with a judgment id) but not stored under that key with that id.
        lost = sum(1 for key, judgment_id in stats["acknowledged"].items() if stored.get(key) != judgment_id)
        print(json.dumps({
            "bench": "labeling_load", "database": "postgresql", "labelers": args.labelers,
            "web_workers": args.web_workers, "seconds": round(stats["elapsed"], 1),
            "judgments": len(stored), "judgments_per_s": round(len(stored) / stats["elapsed"], 1),
            "lease_ms": {"p50": round(statistics.median(stats["lease_ms"]), 1),
                         "p95": round(percentile(stats["lease_ms"], 0.95), 1)},
            "submit_ms": {"p50": round(statistics.median(stats["submit_ms"]), 1),
                          "p95": round(percentile(stats["submit_ms"], 0.95), 1)},
            # CPU the server spent per stored judgment (its lease, its submit, repeats): less noisy than
            # throughput when other work shares the machine.
            "server_cpu_ms_per_judgment": round(server_cpu * 1000 / max(len(stored), 1), 2),
            # The other two users of the same cores: the load generator and PostgreSQL.
            "client_cpu_ms_per_judgment": round(client_cpu * 1000 / max(len(stored), 1), 2),
            "postgres_cpu_ms_per_judgment": round(db_cpu * 1000 / max(len(stored), 1), 2),
            "double_submits": stats["double_submits"], "retries": stats["retries"],
            "lost": lost, "duplicated": report["duplicated"], "over_collected": report["over_collected"],
            "half_written": report["half_written"], "counter_mismatch": report["counter_mismatch"],
            # Stored but never acknowledged (the client gave up waiting): kept once, not a duplicate.
            "stored_unacknowledged": len(stored.keys() - stats["acknowledged"].keys()),
            "errors": len(stats["errors"]), "first_errors": stats["errors"][:3],
        }))


if __name__ == "__main__":
    main()
