"""The worker process loop: `preflab worker`."""

import logging
import signal
import threading

from sqlalchemy import func, select

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.jobs.models import Job, JobState

log = logging.getLogger("preflab.worker")


def run_worker(settings: Settings, *, poll_seconds: float = 5.0, stop: threading.Event | None = None) -> None:
    """Watch the job queue until SIGTERM/SIGINT. No job kinds are handled yet: queued jobs stay queued."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_sessionmaker(engine)
    log.info("worker started on %s; no job handlers are installed in this version", engine.dialect.name)
    last_seen = -1
    while not stop.is_set():
        try:
            with sessions() as session:
                queued = session.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.queued)) or 0
            if queued != last_seen:
                log.info("%d job(s) queued", queued)
                last_seen = queued
        except Exception:  # noqa: BLE001  (a database hiccup must not end the worker)
            log.exception("could not read the job queue; retrying")
        stop.wait(poll_seconds)
    engine.dispose()
    log.info("worker stopped")
