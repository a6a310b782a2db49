"""The web process killed with SIGKILL while labelers submit: nothing acknowledged is lost, nothing is half-written,
and what was not acknowledged can be sent again with its Idempotency-Key and is stored once."""

import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db import make_engine
from app.labeling.models import Judgment
from app.labeling.service import integrity_report
from tests.security.served import Labelers, WebProcess, seed_labeling

CLEAN = {"half_written": 0, "counter_mismatch": 0, "over_collected": 0, "duplicated": 0}


def test_sigkill_under_load_loses_and_half_writes_nothing(pg_server, pg_template, tmp_path):
    url = pg_server.create(template=make_url(pg_template).database)
    project_id, tokens = seed_labeling(url, labelers=10, tasks=300, k=3, per_task=2)
    web = WebProcess(url, tmp_path / "data")
    web.start()
    try:
        with Labelers(web.base, project_id, tokens) as labelers:
            labelers.wait_for(acknowledged=40, timeout=60)
            web.kill()  # ten clients are mid-request: some submissions are in flight
        record = labelers.record
        assert len(record.acknowledged) >= 40
        assert record.unanswered  # runs here left 4 or 5 of the ten clients waiting on a submission
        assert not [s for s in record.statuses if s[2] >= 500]

        engine = make_engine(url)
        with Session(engine) as db:
            stored = dict(db.execute(select(Judgment.idempotency_key, Judgment.id)).all())
            # Every acknowledged judgment is there under its key; whatever else is there was in flight.
            assert {key: stored.get(key) for key in record.acknowledged} == record.acknowledged
            assert set(stored) - set(record.acknowledged) <= {s.key for s in record.unanswered}
            assert integrity_report(session=db, project_id=project_id) == {"judgments": len(stored), **CLEAN}

        web.start()
        retried = {}
        for submission in record.unanswered:
            headers = {"Authorization": f"Bearer {submission.token}", "Idempotency-Key": submission.key}
            url_path = f"{web.base}/api/v1/assignments/{submission.assignment_id}/judgment"
            first = httpx.post(url_path, json=submission.body, headers=headers, timeout=10)
            again = httpx.post(url_path, json=submission.body, headers=headers, timeout=10)
            assert first.status_code == again.status_code == 201, first.text
            assert first.json()["id"] == again.json()["id"]
            if submission.key in stored:  # it had been committed before the kill: the retry answers that one
                assert first.json()["id"] == stored[submission.key]
            retried[submission.key] = first.json()["id"]

        with Session(engine) as db:
            after = dict(db.execute(select(Judgment.idempotency_key, Judgment.id)).all())
            assert after == {**record.acknowledged, **retried}  # each submission stored exactly once
            assert integrity_report(session=db, project_id=project_id) == {"judgments": len(after), **CLEAN}
        engine.dispose()
    finally:
        web.stop()
