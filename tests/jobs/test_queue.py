"""The job queue on SQLite and PostgreSQL: leases, fencing, retries, dedupe, cancel, many workers."""

import multiprocessing
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import make_engine
from app.jobs import service as queue
from app.jobs.models import Job, JobKind, JobState
from app.projects.models import Project


@pytest.fixture
def engine(fresh_database_url):
    engine = make_engine(fresh_database_url)
    yield engine
    engine.dispose()


def _enqueue(engine, n: int = 1, **kwargs) -> list[int]:
    with Session(engine) as session:
        jobs = [queue.enqueue(session=session, kind=JobKind.sample, payload={"n": i}, **kwargs) for i in range(n)]
        session.commit()
        return [j.id for j in jobs]


def _job(engine, job_id: int) -> Job:
    with Session(engine) as session:
        return session.get(Job, job_id)


def test_claim_heartbeat_succeed(engine):
    [job_id] = _enqueue(engine)
    job = queue.claim(engine, worker_id="w1")
    assert (job.id, job.state, job.attempt, job.lease_owner) == (job_id, JobState.running, 1, "w1")
    assert queue.claim(engine, worker_id="w2") is None  # leased, not expired
    with Session(engine) as session:
        queue.heartbeat(session=session, job=job, progress=0.5, message="half way")
        session.commit()
    assert (_job(engine, job_id).progress, _job(engine, job_id).message) == (0.5, "half way")
    with Session(engine) as session:
        queue.succeed(session=session, job=job, result={"completions": 4})
        session.commit()
    done = _job(engine, job_id)
    assert (done.state, done.progress, done.result, done.finished_at is not None) == (
        JobState.succeeded, 1.0, {"completions": 4}, True)


def test_claim_only_the_kinds_asked_for(engine):
    with Session(engine) as session:
        queue.enqueue(session=session, kind=JobKind.train_dpo, payload={})
        session.commit()
    assert queue.claim(engine, worker_id="w", kinds=[JobKind.sample]) is None
    assert queue.claim(engine, worker_id="w", kinds=[JobKind.train_dpo]).kind == JobKind.train_dpo


def test_a_job_is_enqueued_with_the_row_it_serves(engine):
    with Session(engine) as session:
        project = Project(name="p", k=2, labels_per_task=1, rating_schema={}, sampling_params={})
        session.add(project)
        session.flush()
        queue.enqueue(session=session, kind=JobKind.sample, payload={}, project_id=project.id)
        session.rollback()  # the caller's transaction fails: neither the row nor its job exists
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_dedupe_key_while_active(engine):
    first = _enqueue(engine, dedupe_key="sample:prompt:7")
    again = _enqueue(engine, dedupe_key="sample:prompt:7")
    assert first == again
    job = queue.claim(engine, worker_id="w")
    assert _enqueue(engine, dedupe_key="sample:prompt:7") == first  # still running: same job
    with Session(engine) as session:
        queue.succeed(session=session, job=job)
        session.commit()
    later = _enqueue(engine, dedupe_key="sample:prompt:7")
    assert later != first  # finished work may be queued again


def test_expired_lease_goes_back_and_the_old_worker_cannot_publish(engine):
    [job_id] = _enqueue(engine)
    stale = queue.claim(engine, worker_id="dead-worker", lease=timedelta(milliseconds=50))
    time.sleep(0.2)
    fresh = queue.claim(engine, worker_id="new-worker")
    assert (fresh.id, fresh.attempt, fresh.lease_owner) == (job_id, 2, "new-worker")

    with Session(engine) as session:
        session.add(Project(name="written by the stale worker", k=2, labels_per_task=1, rating_schema={},
                            sampling_params={}))
        with pytest.raises(queue.LeaseLost):
            queue.succeed(session=session, job=stale)
        session.rollback()
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0
        with pytest.raises(queue.LeaseLost):
            queue.heartbeat(session=session, job=stale)
        queue.succeed(session=session, job=fresh)
        session.commit()
    assert _job(engine, job_id).state == JobState.succeeded


def test_failures_retry_with_backoff_then_dead_with_the_error(engine):
    [job_id] = _enqueue(engine, max_attempts=2)
    job = queue.claim(engine, worker_id="w")
    with Session(engine) as session:
        assert queue.fail(session=session, job=job, error="CUDA out of memory") == JobState.queued
        session.commit()
    retry = _job(engine, job_id)
    assert retry.state == JobState.queued and retry.error == "CUDA out of memory"
    assert retry.run_after > retry.started_at
    assert queue.claim(engine, worker_id="w") is None  # backing off

    with Session(engine) as session:
        session.get(Job, job_id).run_after = retry.started_at
        session.commit()
    job = queue.claim(engine, worker_id="w")
    assert job.attempt == 2
    with Session(engine) as session:
        assert queue.fail(session=session, job=job, error="CUDA out of memory again") == JobState.dead
        session.commit()
    dead = _job(engine, job_id)
    assert (dead.state, dead.error, dead.attempt) == (JobState.dead, "CUDA out of memory again", 2)


def test_a_worker_dying_on_the_last_attempt_makes_the_job_dead(engine):
    [job_id] = _enqueue(engine, max_attempts=1)
    queue.claim(engine, worker_id="w", lease=timedelta(milliseconds=10))
    time.sleep(0.1)
    assert queue.claim(engine, worker_id="w2") is None
    dead = _job(engine, job_id)
    assert dead.state == JobState.dead and "lease expired on attempt 1 of 1" in dead.error


def test_cancel(engine):
    queued_id, running_id = _enqueue(engine, 2)
    running = queue.claim(engine, worker_id="w")
    assert running.id == queued_id
    with Session(engine) as session:
        assert queue.cancel(session=session, job_id=running_id).state == JobState.cancelled
        queue.cancel(session=session, job_id=queued_id)
        session.commit()
    with Session(engine) as session:
        with pytest.raises(queue.LeaseLost):
            queue.heartbeat(session=session, job=running)
        with pytest.raises(queue.Conflict):
            queue.cancel(session=session, job_id=running_id)
    assert queue.claim(engine, worker_id="w") is None


def _claim_all(url: str, worker: str, out, ready, go) -> None:
    engine = make_engine(url)
    claimed = []
    # Start together: on a busy machine one process could otherwise drain the queue before the others are up.
    ready.release()
    go.wait(timeout=120)
    while (job := queue.claim(engine, worker_id=worker)) is not None:
        with Session(engine) as session:
            queue.succeed(session=session, job=job, result={"by": worker})
            session.commit()
        claimed.append(job.id)
    engine.dispose()
    out.put(claimed)


def test_four_processes_claim_200_jobs_none_twice(engine, fresh_database_url):
    ids = _enqueue(engine, 200)
    ctx = multiprocessing.get_context("spawn")
    out, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    workers = [ctx.Process(target=_claim_all, args=(fresh_database_url, f"w{i}", out, ready, go)) for i in range(4)]
    for w in workers:
        w.start()
    for _ in workers:
        assert ready.acquire(timeout=120)
    go.set()
    claimed = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    flat = [job_id for batch in claimed for job_id in batch]
    assert sorted(flat) == sorted(ids)  # every job once, none twice
    assert sum(1 for batch in claimed if batch) >= 2  # the work really was shared
    with Session(engine) as session:
        rows = session.execute(select(Job.state, Job.attempt)).all()
    assert {tuple(r) for r in rows} == {(JobState.succeeded, 1)}
