"""Exports that use the review metrics: consensus pairs, minimum task agreement, consensus-best SFT."""

import io

import orjson
import pyarrow.parquet as pq
import pytest

from app.export.lookups import labeler_pseudonym
from tests.conftest import TEST_SECRET
from tests.export.planted import plant

pytest.importorskip("app.review.metrics", reason="the review helper's metrics (issue 5) are not merged yet")


@pytest.fixture
def planted(db):
    return plant(db)


def rows(client, planted, query: str) -> list[dict]:
    response = client.get(f"/api/v1/projects/{planted.project.id}/export?{query}", headers=planted.admin_headers)
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


def test_min_agreement_keeps_tasks_whose_labelers_agree(client, planted):
    # Pair agreement: task 0 (3 labelers) 8/9, task 1 (2 labelers, one tie) 5/6; the others have one
    # judgment each, so nothing to agree on.
    strict = rows(client, planted, "format=pairs&min_agreement=0.85")
    assert {r["task_id"] for r in strict} == {planted.tasks[0].id} and len(strict) == 9
    loose = rows(client, planted, "format=pairs&min_agreement=0.8")
    assert {r["task_id"] for r in loose} == {planted.tasks[0].id, planted.tasks[1].id} and len(loose) == 14
    rankings = rows(client, planted, "format=rankings&min_agreement=0.85")
    assert [r["judgment_id"] for r in rankings] == [j.id for j in planted.judgments[:3]]
    assert rows(client, planted, "format=ratings&min_agreement=0.99") == []


def test_consensus_pairs_one_set_per_task(client, planted):
    exported = rows(client, planted, "format=pairs&mode=consensus")
    by_task = {}
    for row in exported:
        by_task.setdefault(row["task_id"], []).append(row)
    # Task 3's only judgment is excluded; every other task gives its 3 consensus pairs.
    assert set(by_task) == {planted.tasks[i].id for i in (0, 1, 2, 4, 5)} and len(exported) == 15
    c = [[x.id for x in row] for row in planted.completions]
    text = planted.text
    first = {(text(c[0][0]), text(c[0][1])), (text(c[0][0]), text(c[0][2])), (text(c[0][1]), text(c[0][2]))}
    assert {(r["chosen"], r["rejected"]) for r in by_task[planted.tasks[0].id]} == first
    # Task 1: one labeler tied completions 0 and 1, the other put 1 first; 1 wins the consensus.
    second = {(r["chosen"], r["rejected"]) for r in by_task[planted.tasks[1].id]}
    assert second == {(text(c[1][1]), text(c[1][0])), (text(c[1][1]), text(c[1][2])), (text(c[1][0]), text(c[1][2]))}
    row = by_task[planted.tasks[0].id][0]
    assert row["judgment_ids"] == [j.id for j in planted.judgments[:3]]
    assert row["labelers"] == [labeler_pseudonym(TEST_SECRET, u.id) for u in planted.labelers]
    assert 0.5 < row["consensus_strength"] <= 1 and row["score_margin"] > 0
    assert all(r["margin"] >= 1 for r in exported)
    parquet = client.get(f"/api/v1/projects/{planted.project.id}/export?format=pairs&mode=consensus&file=parquet",
                         headers=planted.admin_headers)
    assert pq.read_table(io.BytesIO(parquet.content)).to_pylist() == exported
    flagged = rows(client, planted, "format=pairs&mode=consensus&exclude_flags=hallucination")
    assert len(flagged) == 13 and text(c[2][2]) not in {r["chosen"] for r in flagged} | {r["rejected"] for r in flagged}


def test_sft_with_the_consensus_best_completion(client, planted):
    exported = rows(client, planted, "format=sft&include_best=true")
    best = [r for r in exported if r["source"] == "consensus_best"]
    c = planted.completions
    # Task 5's labeler found none acceptable; task 3's judgment is excluded.
    assert [(r["task_id"], r["completion_id"]) for r in best] == [
        (planted.tasks[0].id, c[0][0].id), (planted.tasks[1].id, c[1][1].id), (planted.tasks[2].id, c[2][2].id),
        (planted.tasks[4].id, c[4][0].id)]
    assert best[1]["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi."},
                                   {"role": "assistant", "content": c[1][1].text}]
    assert [r["source"] for r in exported].count("demonstration") == 1
    unflagged = rows(client, planted, "format=sft&include_best=true&exclude_flags=hallucination")
    assert c[2][2].id not in {r["completion_id"] for r in unflagged} and len(unflagged) == 4
