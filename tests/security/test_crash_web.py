"""The web process killed with SIGKILL while labelers submit: nothing acknowledged is lost, nothing is half-written,
and what was not acknowledged can be sent again with its Idempotency-Key and is stored once."""

import httpx
from sqlalchemy.engine import make_url

from tests.security.served import Labelers, labeling_service, stored_judgments


def test_sigkill_under_load_loses_and_half_writes_nothing(pg_server, pg_template, tmp_path):
    url = pg_server.create(template=make_url(pg_template).database)
    with labeling_service(url, tmp_path / "data") as (web, project_id, tokens):
        with Labelers(web.base, project_id, tokens) as labelers:
            labelers.wait_for(acknowledged=40, timeout=60)
            web.kill()  # ten clients are mid-request: some submissions are in flight
        record = labelers.record
        assert len(record.acknowledged) >= 40
        assert record.unanswered  # runs here left 4 or 5 of the ten clients waiting on a submission
        assert not [s for s in record.statuses if s[2] >= 500]
        stored = stored_judgments(url, project_id, record)

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
        record.acknowledged.update(retried)
        # Each submission is stored exactly once: the acknowledged ones and the retried ones, nothing else.
        assert stored_judgments(url, project_id, record) == record.acknowledged
