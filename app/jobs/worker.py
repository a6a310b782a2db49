"""The worker process (`preflab worker`): claims jobs, runs their handlers, keeps tasks ready."""

import importlib
import logging
import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

import app.models_registry  # noqa: F401  (every table known before the first query)
from app.config import Settings
from app.db import make_engine
from app.jobs import service as queue
from app.jobs.models import Job, JobKind, JobMetric

log = logging.getLogger("preflab.worker")

# Handlers are imported when a job of their kind first runs: torch loads only in workers that sample.
HANDLERS: dict[JobKind, str] = {
    JobKind.sample: "app.policy.sampling:run_sample_job",
    JobKind.train_reward: "app.training.jobs:run_train_reward_job",
    JobKind.train_dpo: "app.training.jobs:run_train_dpo_job",
    JobKind.score: "app.training.jobs:run_score_job",
}


class JobError(Exception):
    """A job that cannot succeed as asked (bad settings, missing rows): failed at once, not retried."""


class JobContext:
    """What a handler gets: its session, its job, the settings, progress reports and the lease check."""

    def __init__(self, engine: Engine, settings: Settings, session: Session, job: Job, lease: timedelta) -> None:
        self.engine, self.settings, self.session, self.job, self.lease = engine, settings, session, job, lease
        self._fraction, self._message, self._eta_at = 0.0, "running", None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat_loop, name=f"heartbeat-{job.id}", daemon=True)
        self._beat.start()

    def progress(self, fraction: float, message: str, eta_at: datetime | None = None) -> None:
        """Recorded at the next heartbeat."""
        self._fraction, self._message, self._eta_at = fraction, message, eta_at

    def record_metrics(self, points: list[tuple[int, dict[str, float]]]) -> None:
        """Curve points (step, {name: value}) committed now, so the job page shows them while it runs."""
        self.check()
        with Session(self.engine) as session:
            for step, values in points:
                queue.record_metrics(session=session, job=self.job, step=step, values=values)
            session.commit()

    def reset_metrics(self) -> None:
        """Forget the curves of an earlier attempt: this attempt draws them again from step 1."""
        with Session(self.engine) as session:
            session.execute(delete(JobMetric).where(JobMetric.job_id == self.job.id))
            session.commit()

    def check(self) -> None:
        """Raise LeaseLost when the job was cancelled or its lease went to another worker."""
        if self._lost.is_set():
            raise queue.LeaseLost(f"job {self.job.id} was cancelled or re-claimed")

    def stop_heartbeat(self) -> None:
        self._stop.set()
        self._beat.join()

    def begin_writes(self) -> None:
        """Stop heartbeating before the handler's writes (SQLite has one writer at a time)."""
        self.stop_heartbeat()
        self.check()

    def _heartbeat_loop(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not self._stop.wait(interval):
            try:
                with Session(self.engine) as session:
                    queue.heartbeat(session=session, job=self.job, lease=self.lease, progress=self._fraction,
                                    message=self._message, eta_at=self._eta_at)
                    session.commit()
            except queue.LeaseLost:
                self._lost.set()
                return
            except Exception:  # noqa: BLE001  (a database hiccup; the next beat may get through)
                log.exception("heartbeat for job %s failed", self.job.id)


def _handler(kind: JobKind) -> Callable[[JobContext], dict[str, Any]]:
    module, _, name = HANDLERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def _describe(exc: BaseException) -> str:
    """The error a person reads on the job page: the message, then where it came from."""
    from app.policy.base import PolicyError

    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (JobError, PolicyError)):
        return message
    return message + "\n\n" + "".join(traceback.format_exception(exc)[-8:])


def run_one(engine: Engine, settings: Settings, worker_id: str) -> bool:
    """Claim and run one job; False when none was ready."""
    from app.policy.base import PolicyError, PolicyUnavailable

    lease = timedelta(seconds=settings.job_lease_seconds)
    job = queue.claim(engine, worker_id=worker_id, kinds=list(HANDLERS), lease=lease)
    if job is None:
        return False
    log.info("job %s (%s) attempt %s started", job.id, job.kind, job.attempt)
    with Session(engine, expire_on_commit=False) as session:
        ctx = JobContext(engine, settings, session, job, lease)
        try:
            result = _handler(job.kind)(ctx)
            ctx.begin_writes()
            queue.succeed(session=session, job=job, result=result)
            session.commit()
            log.info("job %s succeeded: %s", job.id, result)
        except queue.LeaseLost as exc:
            session.rollback()
            ctx.stop_heartbeat()
            log.warning("job %s: %s; its work was discarded", job.id, exc)
        except Exception as exc:  # noqa: BLE001  (any handler error becomes the job's error, never the worker's)
            session.rollback()
            ctx.stop_heartbeat()
            error = _describe(exc)
            retry = isinstance(exc, PolicyUnavailable) or not isinstance(exc, (JobError, PolicyError))
            with Session(engine) as failed:
                try:
                    state = queue.fail(session=failed, job=job, error=error, retry=retry)
                    failed.commit()
                    log.error("job %s attempt %s failed (%s): %s", job.id, job.attempt, state, error.splitlines()[0])
                except queue.LeaseLost:
                    log.warning("job %s failed after losing its lease: %s", job.id, error.splitlines()[0])
    return True


def top_up(engine: Engine, settings: Settings) -> int:
    """Queue sampling so every project with a policy has tasks ready ahead of its labelers."""
    from app.labeling.service import ensure_ready_tasks
    from app.projects.models import Project

    queued = 0
    with Session(engine) as session:
        for project in session.scalars(select(Project).where(Project.current_policy_id.is_not(None))):
            jobs = ensure_ready_tasks(session=session, project=project, target=settings.ready_tasks)
            queued += sum(len(job.payload["prompt_ids"]) for job in jobs)
        session.commit()
    return queued


def run_worker(settings: Settings, *, poll_seconds: float = 2.0, stop: threading.Event | None = None) -> None:
    """Claim and run jobs until SIGTERM/SIGINT; between jobs, keep tasks ready."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    engine = make_engine(settings.sqlalchemy_url)
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    log.info("worker %s started on %s; handles %s", worker_id, engine.dialect.name, ", ".join(HANDLERS))
    while not stop.is_set():
        try:
            if run_one(engine, settings, worker_id):
                continue
            queued = top_up(engine, settings)
            if queued:
                log.info("queued sampling for %d prompt(s) to keep tasks ready", queued)
                continue
        except Exception:  # noqa: BLE001  (a database outage must not end the worker)
            log.exception("worker loop error; retrying")
        stop.wait(poll_seconds)
    engine.dispose()
    log.info("worker stopped")
