"""Export throughput: 1,000,000 comparisons in PostgreSQL, exported as JSONL pairs through the API.

Seeds a throwaway database with COPY (K=4, 3 labelers per task: 18 pairs a task), serves it with
uvicorn in a subprocess, streams GET /projects/{id}/export?format=pairs to nowhere and samples the
server's resident memory every 0.1 s. Prints one JSON line: pairs, seconds, pairs/s, peak RSS, bytes.
"""

import argparse
import json
import random
import tempfile
import threading
import time
from datetime import UTC, datetime
from itertools import combinations

import httpx
import psutil
import pyarrow.parquet as pq
import throwaway
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import app.models_registry  # noqa: F401
from app.models.models import ModelRole, ModelVersion
from app.projects.schemas import ProjectCreate
from app.projects.service import create_project
from app.users.models import Role, Scope
from app.users.service import create_token, create_user

K, LABELERS = 4, 3
WORDS = ("the model answers with a careful and complete explanation of each step while keeping "
         "the tone friendly and the facts straight so that a reader can follow along easily").split()


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Copier:
    """Rows for one table, sent with one COPY ... FROM STDIN (text format; our values hold no tab,
    newline or backslash). A connection runs one COPY at a time, so rows are buffered until close()."""

    def __init__(self, cursor, table: str, columns: str) -> None:
        self.cursor, self.sql, self.lines = cursor, f"COPY {table} ({columns}) FROM STDIN", []

    def row(self, *values) -> None:
        self.lines.append("\t".join("\\N" if v is None else str(v) for v in values))

    def close(self) -> None:
        with self.cursor.copy(self.sql) as copy:
            for start in range(0, len(self.lines), 50_000):
                copy.write(("\n".join(self.lines[start:start + 50_000]) + "\n").encode())
        self.lines = []


def seed(url: str, pairs: int) -> tuple[int, str, int]:
    """A project with enough tasks for `pairs` comparisons; returns (project id, admin token, comparisons)."""
    engine = create_engine(url)
    with Session(engine) as db:
        admin = create_user(session=db, username="admin", role=Role.admin, password="bench-password")
        users = [create_user(session=db, username=f"labeler{i}", role=Role.labeler, password="bench-password")
                 for i in range(LABELERS)]
        project = create_project(session=db, creator=admin, data=ProjectCreate(
            name="export", k=K, labels_per_task=LABELERS, labeler_ids=[u.id for u in users]))
        model = ModelVersion(role=ModelRole.policy, name="bench", source="bench", config={}, metrics={})
        db.add(model)
        db.flush()
        token = create_token(session=db, user=admin, name="bench", scope=Scope.read)[1]
        project_id, model_id, user_ids = project.id, model.id, [u.id for u in users]
        db.commit()

    per_task = LABELERS * K * (K - 1) // 2
    tasks = -(-pairs // per_task)
    rng = random.Random(0)
    now = datetime.now(UTC).isoformat()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        prompt = Copier(cur, "prompt", "id, project_id, kind, text, content_hash, source_user, source, meta, created_at")
        for t in range(1, tasks + 1):
            prompt.row(t, project_id, "text", f"Question {t}: {_words(rng, 15)}?", f"h{t}", f"user{t % 997}",
                       "bench", "{}", now)
        prompt.close()
        completion = Copier(cur, "completion", "id, prompt_id, model_version_id, text, text_hash, token_count, "
                                               "finish_reason, sampling_params, seed, created_at")
        for t in range(1, tasks + 1):
            for j in range(K):
                completion.row((t - 1) * K + j + 1, t, model_id, f"Answer {j}: {_words(rng, 45)}.", "x", 60,
                               "stop", "{}", j, now)
        completion.close()
        task = Copier(cur, "task", "id, project_id, prompt_id, state, labels_needed, labels_done, created_at")
        task_completion = Copier(cur, "task_completion", "task_id, completion_id, position")
        for t in range(1, tasks + 1):
            task.row(t, project_id, t, "complete", LABELERS, LABELERS, now)
        task.close()
        for t in range(1, tasks + 1):
            for j in range(K):
                task_completion.row(t, (t - 1) * K + j + 1, j)
        task_completion.close()
        assignment = Copier(cur, "assignment", "id, task_id, user_id, state, display_order, leased_at, lease_expires_at")
        judgment = Copier(cur, "judgment", "id, task_id, user_id, assignment_id, idempotency_key, request_hash, "
                                           "rationale, none_acceptable, prompt_flags, revision, excluded, created_at, "
                                           "updated_at")
        rating = Copier(cur, "completion_rating", "id, judgment_id, completion_id, rank, likert, flags, note")
        comparison = Copier(cur, "comparison", "id, judgment_id, task_id, chosen_id, rejected_id, margin, is_tie")
        written = 0
        for t in range(1, tasks + 1):
            completions = [(t - 1) * K + j + 1 for j in range(K)]
            for u, user_id in enumerate(user_ids):
                jid = (t - 1) * LABELERS + u + 1
                assignment.row(jid, t, user_id, "submitted", json.dumps(completions), now, now)
                judgment.row(jid, t, user_id, jid, f"k{jid}", "x", "", "false", "[]", 1, "false", now, now)
                ranks = dict(zip(completions, rng.sample(range(1, K + 1), K)))
                for cid in completions:
                    rating.row((jid - 1) * K + completions.index(cid) + 1, jid, cid, ranks[cid], 4, "[]", "")
                for a, b in combinations(completions, 2):
                    if written == pairs:
                        break
                    chosen, rejected = (a, b) if ranks[a] < ranks[b] else (b, a)
                    written += 1
                    comparison.row(written, jid, t, chosen, rejected, abs(ranks[a] - ranks[b]), "false")
        for copier in (assignment, judgment, rating, comparison):
            copier.close()
        for table in ("prompt", "completion", "task", "assignment", "judgment", "completion_rating", "comparison"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    engine.dispose()
    return project_id, token, written


def measure(url: str, project_id: int, token: str, query: str) -> dict:
    """One export through a freshly started server: rows, time, bytes and the server's peak RSS."""
    with throwaway.server(url) as (base, server), tempfile.TemporaryFile() as sink:
        process = psutil.Process(server.pid)
        idle_rss = process.memory_info().rss
        peak = [idle_rss]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        lines = size = 0
        parquet = "file=parquet" in query
        started = time.perf_counter()
        with httpx.stream("GET", f"{base}/api/v1/projects/{project_id}/export?{query}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=None) as response:
            response.raise_for_status()
            for data in response.iter_raw(1 << 20):
                lines += data.count(b"\n")
                size += len(data)
                if parquet:
                    sink.write(data)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        if parquet:
            sink.seek(0)
            lines = pq.ParquetFile(sink).metadata.num_rows
    return {"query": query, "rows": lines, "seconds": round(seconds, 2), "rows_per_s": round(lines / seconds),
            "peak_rss_mb": round(peak[0] / 2**20, 1), "idle_rss_mb": round(idle_rss / 2**20, 1), "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--query", action="append", help="export query string (repeatable; default format=pairs); "
                                                         "the first one gives the headline figures")
    args = parser.parse_args()

    with throwaway.database() as url:
        started = time.perf_counter()
        project_id, token, comparisons = seed(url, args.pairs)
        seed_seconds = time.perf_counter() - started
        runs = [measure(url, project_id, token, query) for query in args.query or ["format=pairs"]]
    first = runs[0]
    print(json.dumps({
        "bench": "export", "database": "postgresql", "comparisons": comparisons, "query": first["query"],
        "pairs": first["rows"], "seconds": first["seconds"], "pairs_per_s": first["rows_per_s"],
        "peak_rss_mb": first["peak_rss_mb"], "bytes": first["bytes"], "seed_seconds": round(seed_seconds, 1),
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
