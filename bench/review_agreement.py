"""How long the agreement figures take on a large project: GET /projects/{id}/agreement's work.

Builds a project on a fresh SQLite file (or --database-url, a migrated empty database): --judgments
judgments of --labels labelers per task over tasks of K=4 completions from two model versions, with
Likert, flags and display orders; then times service.project_agreement (every figure, all tasks)
and counts its queries. Prints one JSON line.
"""

import argparse
import json
import random
import tempfile
import time
from datetime import timedelta

from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from app import migrate
from app.db import make_engine, utcnow
from app.labeling.judgments import expand_pairs
from app.labeling.models import Assignment, Comparison, CompletionRating, Judgment, Task, TaskCompletion
from app.models.models import ModelRole, ModelVersion
from app.projects.models import Project
from app.projects.schemas import ProjectCreate
from app.projects.service import create_project
from app.prompts.models import Completion, Prompt
from app.review.service import project_agreement
from app.users.models import Role
from app.users.service import create_user


def build(session: Session, judgments: int, labels: int, labelers: int, k: int, seed: int) -> int:
    rng = random.Random(seed)
    admin = create_user(session=session, username="bench-admin", role=Role.admin, password="bench-password-1")
    users = [create_user(session=session, username=f"labeler{i}", role=Role.labeler, password="bench-password-1")
             for i in range(labelers)]
    session.flush()
    project = create_project(session=session, data=ProjectCreate(name="bench", k=k, labels_per_task=labels,
                                                                 labeler_ids=[u.id for u in users]), creator=admin)
    versions = [ModelVersion(role=ModelRole.policy, name=f"v{i}", source="s", config={}, metrics={}) for i in (1, 2)]
    session.add_all(versions)
    session.flush()
    tasks = judgments // labels
    start = utcnow() - timedelta(days=30)
    cid = jid = 0
    prompts, completions, task_rows, links, assigns, judged, ratings, pairs = [], [], [], [], [], [], [], []
    for t in range(1, tasks + 1):
        prompts.append({"id": t, "project_id": project.id, "kind": "text", "text": f"prompt {t}",
                        "content_hash": f"h{t}", "meta": {}, "source": ""})
        task_rows.append({"id": t, "project_id": project.id, "prompt_id": t, "labels_needed": labels,
                          "labels_done": labels, "state": "complete", "created_at": start})
        ids = list(range(cid + 1, cid + k + 1))
        cid += k
        quality = {c: rng.gauss(0.5 if p % 2 else 0.0, 1.0) for p, c in enumerate(ids)}
        for p, c in enumerate(ids):
            completions.append({"id": c, "prompt_id": t, "model_version_id": versions[p % 2].id, "text": f"a{c}",
                                "text_hash": str(c), "token_count": 3, "finish_reason": "stop", "sampling_params": {},
                                "created_at": start})
            links.append({"task_id": t, "completion_id": c, "position": p})
        for user in rng.sample(users, labels):
            jid += 1
            noisy = sorted(ids, key=lambda c: -(quality[c] + rng.gauss(0, 0.7)))
            ranks = {c: place + 1 for place, c in enumerate(noisy)}
            order = rng.sample(ids, k)
            created = start + timedelta(minutes=jid * 7)
            assigns.append({"id": jid, "task_id": t, "user_id": user.id, "state": "submitted", "display_order": order,
                            "leased_at": created, "lease_expires_at": created})
            judged.append({"id": jid, "task_id": t, "user_id": user.id, "assignment_id": jid, "idempotency_key": str(jid),
                           "request_hash": "x", "duration_ms": rng.randint(5_000, 90_000), "rationale": "",
                           "prompt_flags": [], "created_at": created, "updated_at": created})
            ratings.extend({"judgment_id": jid, "completion_id": c, "rank": r, "likert": max(1, min(7, 8 - 2 * r)),
                            "flags": ["hallucination"] if r == k and rng.random() < 0.3 else [], "note": ""}
                           for c, r in ranks.items())
            pairs.extend({"judgment_id": jid, "task_id": t, "chosen_id": a, "rejected_id": b, "margin": m, "is_tie": tie}
                         for a, b, m, tie in expand_pairs(ranks))
    for model, rows in ((Prompt, prompts), (Task, task_rows), (Completion, completions), (TaskCompletion, links),
                        (Assignment, assigns), (Judgment, judged), (CompletionRating, ratings), (Comparison, pairs)):
        session.execute(insert(model), rows)
    session.commit()
    return project.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--judgments", type=int, default=5000)
    parser.add_argument("--labels", type=int, default=3, help="labelers per task")
    parser.add_argument("--labelers", type=int, default=20)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--database-url", default=None, help="a migrated, empty database (default: a temp SQLite file)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        if args.database_url is None:
            migrate.upgrade(url)
        engine = make_engine(url)
        with Session(engine) as session:
            project_id = build(session, args.judgments, args.labels, args.labelers, args.k, seed=0)
        queries = []
        event.listen(engine, "before_cursor_execute", lambda *a: queries.append(1))
        timings = []
        for _ in range(args.repeat):
            queries.clear()
            with Session(engine) as session:
                t0 = time.perf_counter()
                figures = project_agreement(session=session, project=session.get(Project, project_id), task_limit=100)
                timings.append(time.perf_counter() - t0)
        engine.dispose()
    print(json.dumps({"bench": "review_agreement", "database": url.split(":")[0], "judgments": args.judgments,
                      "tasks": figures["tasks_total"], "labelers": len(figures["labelers"]), "k": args.k,
                      "seconds_best": round(min(timings), 3), "seconds_all": [round(t, 3) for t in timings],
                      "queries": len(queries), "alpha_ranks": round(figures["alpha"]["ranks"], 3),
                      "leaderboard": [(v["name"], round(v["rating"])) for v in figures["leaderboard"]]}))


if __name__ == "__main__":
    main()
