"""What the crash tests share: Preflab in a uvicorn process of its own, a seeded labeling project, and labeler
clients in threads that record which submissions the server acknowledged."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import make_engine
from app.labeling.models import Judgment
from app.labeling.service import integrity_report
from app.users.models import Role, Scope
from tests.factories import make_admin, make_project, make_tasks, make_token, make_user

SECRET = "crash-test-secret-" + "s" * 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebProcess:
    """`uvicorn app.main:create_app` in a subprocess, so it can be killed like a real server."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.database_url, self.data_dir = database_url, data_dir
        self.process: subprocess.Popen | None = None
        self.base = ""

    def start(self, timeout: float = 30) -> None:
        port = free_port()
        env = {**os.environ, "PREFLAB_DATABASE_URL": self.database_url, "PREFLAB_SECRET_KEY": SECRET,
               "PREFLAB_DATA_DIR": str(self.data_dir)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "the web process exited while starting"
            time.sleep(0.1)
        raise AssertionError(f"the web process did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no rollback, the connections just drop."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@contextmanager
def labeling_service(database_url: str, data_dir: Path, *, labelers: int = 10) -> Iterator[tuple[WebProcess, int,
                                                                                                  list[str]]]:
    """A seeded project (300 tasks of K=3, 2 labels each) served by a WebProcess; yields it, the project and tokens."""
    project_id, tokens = seed_labeling(database_url, labelers=labelers, tasks=300, k=3, per_task=2)
    web = WebProcess(database_url, data_dir)
    web.start()
    try:
        yield web, project_id, tokens
    finally:
        web.stop()


def stored_judgments(database_url: str, project_id: int, record: "Record") -> dict[str, int]:
    """The stored judgments by Idempotency-Key, after checking that every acknowledged one is there, that the others
    were in flight, and that nothing is half-written, miscounted, over-collected or duplicated."""
    engine = make_engine(database_url)
    with Session(engine) as db:
        stored = dict(db.execute(select(Judgment.idempotency_key, Judgment.id)).all())
        report = integrity_report(session=db, project_id=project_id)
    engine.dispose()
    assert {key: stored.get(key) for key in record.acknowledged} == record.acknowledged
    assert set(stored) - set(record.acknowledged) <= {s.key for s in record.unanswered}
    assert report == {"judgments": len(stored), "half_written": 0, "counter_mismatch": 0, "over_collected": 0,
                      "duplicated": 0}
    return stored


def seed_labeling(database_url: str, *, labelers: int, tasks: int, k: int, per_task: int) -> tuple[int, list[str]]:
    """A project with `tasks` open tasks of K completions and `labelers` members; returns its id and their tokens."""
    engine = make_engine(database_url)
    with Session(engine) as db:
        admin = make_admin(db)
        users = [make_user(db, Role.labeler) for _ in range(labelers)]
        project = make_project(db, admin, k=k, labels_per_task=per_task, labeler_ids=[u.id for u in users])
        make_tasks(db, project, n=tasks, k=k)
        tokens = [make_token(db, u, Scope.label) for u in users]
        project_id = project.id
    engine.dispose()
    return project_id, tokens


@dataclass
class Submission:
    token: str
    assignment_id: int
    key: str
    body: dict


@dataclass
class Record:
    """What the clients saw: acknowledged judgment ids by key, submissions without an answer, every status."""

    acknowledged: dict[str, int] = field(default_factory=dict)
    unanswered: list[Submission] = field(default_factory=list)
    statuses: list[tuple[float, str, int]] = field(default_factory=list)   # (monotonic time, call, status)
    retry_after: list[str | None] = field(default_factory=list)            # the header of every 503
    lock: threading.Lock = field(default_factory=threading.Lock)


def _labeler(base: str, token: str, project_id: int, record: Record, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        while not stop.is_set():
            try:
                leased = client.post(f"/api/v1/projects/{project_id}/assignments")
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            _note(record, "lease", leased)
            if leased.status_code == 204:
                return
            if leased.status_code != 201:
                time.sleep(0.05)
                continue
            assignment = leased.json()
            order = [c["id"] for c in assignment["completions"]]
            body = {"ranks": {str(c): i + 1 for i, c in enumerate(order)},
                    "ratings": {str(order[0]): {"likert": 5, "flags": [], "note": "first"}}, "rationale": "crash test"}
            submission = Submission(token, assignment["id"], str(uuid.uuid4()), body)
            answer = _submit(client, submission, record, stop)
            if answer is None:
                with record.lock:
                    record.unanswered.append(submission)
            elif answer.status_code == 201:
                with record.lock:
                    record.acknowledged[submission.key] = answer.json()["id"]


def _submit(client: httpx.Client, submission: Submission, record: Record,
            stop: threading.Event) -> httpx.Response | None:
    """Send a judgment until an answer other than 503 comes back, with the same key (as a careful client does);
    None when stopped first."""
    while not stop.is_set():
        try:
            answer = client.post(f"/api/v1/assignments/{submission.assignment_id}/judgment", json=submission.body,
                                 headers={"Idempotency-Key": submission.key})
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        _note(record, "submit", answer)
        if answer.status_code != 503:
            return answer
        time.sleep(0.1)
    return None


def _note(record: Record, call: str, response: httpx.Response) -> None:
    with record.lock:
        record.statuses.append((time.monotonic(), call, response.status_code))
        if response.status_code == 503:
            record.retry_after.append(response.headers.get("retry-after"))


class Labelers:
    """Labeler clients, one thread each, leasing and submitting until stopped."""

    def __init__(self, base: str, project_id: int, tokens: list[str]) -> None:
        self.record, self.stop_event = Record(), threading.Event()
        self.threads = [threading.Thread(target=_labeler, args=(base, t, project_id, self.record, self.stop_event),
                                         daemon=True) for t in tokens]

    def __enter__(self) -> "Labelers":
        for thread in self.threads:
            thread.start()
        return self

    def wait_for(self, acknowledged: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.record.acknowledged) < acknowledged and time.monotonic() < deadline:
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)
