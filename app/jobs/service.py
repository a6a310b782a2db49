"""The durable job queue: enqueue, claim (a lease), heartbeat, finish, fail, cancel.

Jobs live in the database, so a job is enqueued in the same transaction as the row it serves.
A claim is a lease: the worker must heartbeat before `lease_expires_at`, or the job goes back to
the queue for another attempt. Every write a worker makes about a job is fenced by
(id, attempt, lease_owner, state=running): a worker that lost its lease (expired, re-claimed,
cancelled) cannot publish its result. PostgreSQL claims with FOR UPDATE SKIP LOCKED; SQLite
with one UPDATE statement inside an immediate (write-locked) transaction.
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import begin_write, get_by_id, utcnow
from app.errors import Conflict, NotFound
from app.jobs.models import Job, JobKind, JobMetric, JobState

ACTIVE = (JobState.queued, JobState.running)
FINAL = (JobState.succeeded, JobState.failed, JobState.cancelled, JobState.dead)
DEFAULT_LEASE = timedelta(minutes=5)
MAX_ERROR_CHARS = 20_000


class LeaseLost(Exception):
    """This worker no longer holds the job (lease expired and re-claimed, or cancelled)."""


def enqueue(*, session: Session, kind: JobKind, payload: dict[str, Any], project_id: int | None = None,
            dedupe_key: str | None = None, max_attempts: int = 3, created_by_id: int | None = None,
            run_after: datetime | None = None) -> Job:
    """Queue a job in the caller's transaction; with a dedupe key, an active job with it is returned instead."""
    if dedupe_key is not None:
        existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        if existing is not None:
            return existing
    job = Job(kind=kind, payload=payload, project_id=project_id, dedupe_key=dedupe_key, max_attempts=max_attempts,
              created_by_id=created_by_id, run_after=run_after or utcnow(), state=JobState.queued, attempt=0,
              progress=0.0, message="queued")
    if dedupe_key is None:
        session.add(job)
        session.flush()
        return job
    try:
        with session.begin_nested():  # a concurrent enqueue of the same key loses the race here
            session.add(job)
    except IntegrityError:
        existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        if existing is None:
            raise
        return existing
    return job


def _claimable(now: datetime, kinds: list[JobKind] | None):
    ready = or_(
        (Job.state == JobState.queued) & (Job.run_after <= now),
        (Job.state == JobState.running) & (Job.lease_expires_at < now),  # its worker stopped heartbeating
    )
    return ready & Job.kind.in_(kinds) if kinds else ready


def claim(engine: Engine, *, worker_id: str, kinds: list[JobKind] | None = None,
          lease: timedelta = DEFAULT_LEASE) -> Job | None:
    """Lease the oldest ready job to this worker (its own transaction, committed); None when none is ready."""
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        begin_write(session)  # SQLite: the write lock before reading, so two workers never pick one row
        pick = (select(Job.id).where(_claimable(now, kinds)).order_by(Job.id).limit(1)
                .with_for_update(skip_locked=True))
        job_id = session.scalar(pick)
        if job_id is None:
            session.rollback()
            return None
        job = session.get(Job, job_id)
        if job.attempt >= job.max_attempts:
            # Its last attempt's worker died mid-job: no attempt is left to give.
            _finish_dead(job, f"lease expired on attempt {job.attempt} of {job.max_attempts}; "
                              "the worker stopped without reporting", now)
            session.commit()
            return claim(engine, worker_id=worker_id, kinds=kinds, lease=lease)
        job.state = JobState.running
        job.attempt += 1
        job.lease_owner = worker_id
        job.lease_expires_at = now + lease
        job.heartbeat_at = now
        job.started_at = job.started_at or now
        job.message = f"running (attempt {job.attempt} of {job.max_attempts})"
        session.commit()
        return job


def _fence(job: Job):
    return (Job.id == job.id) & (Job.attempt == job.attempt) & (Job.lease_owner == job.lease_owner) & (
        Job.state == JobState.running)


def heartbeat(*, session: Session, job: Job, lease: timedelta = DEFAULT_LEASE, progress: float | None = None,
              message: str | None = None, eta_at: datetime | None = None) -> None:
    """Extend the lease (and record progress); raises LeaseLost when the job is no longer ours."""
    now = utcnow()
    values: dict[str, Any] = {"heartbeat_at": now, "lease_expires_at": now + lease, "eta_at": eta_at}
    if progress is not None:
        values["progress"] = min(max(progress, 0.0), 1.0)
    if message is not None:
        values["message"] = message[:2000]
    if session.execute(update(Job).where(_fence(job)).values(**values)).rowcount != 1:
        raise LeaseLost(f"job {job.id} attempt {job.attempt} is no longer held by {job.lease_owner}")


def record_metrics(*, session: Session, job: Job, step: int, values: dict[str, float]) -> None:
    session.add_all(JobMetric(job_id=job.id, step=step, name=name, value=float(v)) for name, v in values.items())


def job_metrics(*, session: Session, job_id: int) -> dict[str, list[tuple[int, float]]]:
    """A job's curves: metric name -> (step, value) points in step order."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in session.execute(select(JobMetric.name, JobMetric.step, JobMetric.value)
                                             .where(JobMetric.job_id == job_id).order_by(JobMetric.name, JobMetric.step)):
        curves.setdefault(name, []).append((step, value))
    return curves


def succeed(*, session: Session, job: Job, result: dict[str, Any] | None = None) -> None:
    """The fenced final write, in the same transaction as the job's own writes; LeaseLost rolls them back."""
    now = utcnow()
    done = session.execute(update(Job).where(_fence(job)).values(
        state=JobState.succeeded, progress=1.0, message="succeeded", result=result or {}, finished_at=now,
        lease_expires_at=None, dedupe_key=None, error=None, eta_at=None))
    if done.rowcount != 1:
        raise LeaseLost(f"job {job.id} attempt {job.attempt} lost its lease before finishing")


def fail(*, session: Session, job: Job, error: str, retry: bool = True) -> JobState:
    """Record a failed attempt: back to the queue with backoff, or `dead` when attempts are spent."""
    now = utcnow()
    error = error[-MAX_ERROR_CHARS:]
    if retry and job.attempt < job.max_attempts:
        values = {"state": JobState.queued, "run_after": now + timedelta(seconds=min(300, 5 * 2 ** job.attempt)),
                  "error": error, "lease_owner": None, "lease_expires_at": None, "eta_at": None,
                  "message": f"attempt {job.attempt} failed; retrying"}
        state = JobState.queued
    else:
        state = JobState.dead if retry else JobState.failed
        values = {"state": state, "error": error, "finished_at": now, "lease_expires_at": None, "dedupe_key": None,
                  "eta_at": None,
                  "message": f"{state} after {job.attempt} attempt(s)"}
    if session.execute(update(Job).where(_fence(job)).values(**values)).rowcount != 1:
        raise LeaseLost(f"job {job.id} attempt {job.attempt} lost its lease before reporting its error")
    return state


def _finish_dead(job: Job, error: str, now: datetime) -> None:
    job.state = JobState.dead
    job.error = error
    job.finished_at = now
    job.lease_expires_at = None
    job.dedupe_key = None
    job.message = f"dead after {job.attempt} attempt(s)"


def cancel(*, session: Session, job_id: int) -> Job:
    """Cancel a queued or running job; a running one's worker finds out at its next heartbeat."""
    job = get_job(session=session, job_id=job_id)
    if job.state in FINAL:
        raise Conflict(f"job {job_id} is already {job.state}", code="job_finished")
    job.state = JobState.cancelled
    job.finished_at = utcnow()
    job.dedupe_key = None
    job.lease_expires_at = None
    job.eta_at = None
    job.message = "cancelled"
    session.flush()
    return job


def recent_jobs(*, session: Session, project_id: int, limit: int = 10) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.project_id == project_id).order_by(Job.id.desc()).limit(limit)))


def get_job(*, session: Session, job_id: int) -> Job:
    job = get_by_id(session, Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", code="job_not_found")
    return job
