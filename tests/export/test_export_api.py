"""Exports over REST on planted data: every format, every filter, splits, Parquet, and who may export."""

import io
from collections import Counter
from itertools import combinations

import orjson
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from app.export.lookups import labeler_pseudonym
from app.export.models import DatasetSnapshot
from app.export.schemas import ExportOptions
from tests.conftest import TEST_SECRET
from tests.export.planted import OLD, PLAN, plant


@pytest.fixture
def planted(db):
    return plant(db)


def export(client, planted, query: str = "", headers=None):
    response = client.get(f"/api/v1/projects/{planted.project.id}/export?{query}",
                          headers=headers or planted.admin_headers)
    assert response.status_code == 200, response.text
    return response


def rows(client, planted, query: str = "") -> list[dict]:
    response = export(client, planted, query)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in response.content.splitlines()]


def expected_pairs(planted, *, skip=lambda t, extras: extras.get("excluded"), ties=False):
    """(task index, labeler index, chosen id, rejected id, margin, tie) from the plan, independently of the code."""
    found = []
    for t, (_content, _user, _version, plan) in enumerate(PLAN):
        ids = [c.id for c in planted.completions[t]]
        for labeler, ranks, extras in plan:
            if skip(t, extras):
                continue
            for a, b in combinations(range(3), 2):
                if ranks[a] == ranks[b]:
                    if ties:
                        found.append((t, labeler, ids[a], ids[b], 0, True))
                    continue
                best, worst = (a, b) if ranks[a] < ranks[b] else (b, a)
                found.append((t, labeler, ids[best], ids[worst], abs(ranks[a] - ranks[b]), False))
    return found


def as_tuples(planted, exported: list[dict]) -> list[tuple]:
    task_index = {t.id: i for i, t in enumerate(planted.tasks)}
    labeler_index = {labeler_pseudonym(TEST_SECRET, u.id): i for i, u in enumerate(planted.labelers)}
    return [(task_index[r["task_id"]], labeler_index[r["labeler"]], r["chosen_id"] if "chosen_id" in r else
             _completion_id(planted, r["chosen"]), _completion_id(planted, r["rejected"]), r["margin"],
             r.get("tie", False)) for r in exported]


def _completion_id(planted, value) -> int:
    text = value[0]["content"] if isinstance(value, list) else value
    return next(c.id for row in planted.completions for c in row if c.text == text)


def test_pairs_are_trl_rows_one_per_comparison(client, planted):
    exported = rows(client, planted, "format=pairs")
    assert sorted(as_tuples(planted, exported)) == sorted(expected_pairs(planted))
    assert len(exported) == 23
    first = exported[0]
    prompt0, best, second = planted.prompts[0], planted.completions[0][0], planted.completions[0][1]
    assert first == {
        "prompt": "Name a prime.", "chosen": best.text, "rejected": second.text, "margin": 1,
        "prompt_id": prompt0.id, "task_id": planted.tasks[0].id, "judgment_id": planted.judgments[0].id,
        "comparison_id": first["comparison_id"], "labeler": labeler_pseudonym(TEST_SECRET, planted.labelers[0].id),
        "chosen_model_version_id": planted.versions[0].id, "rejected_model_version_id": planted.versions[0].id,
        "split": "train"}
    pseudonyms = {r["labeler"] for r in exported}
    assert len(pseudonyms) == 3 and all(p.startswith("lab-") and len(p) == 12 for p in pseudonyms)
    assert not any(str(u.id) == p[4:] or u.username in p for u in planted.labelers for p in pseudonyms)


def test_conversational_pairs_are_chat_messages(client, planted):
    exported = rows(client, planted, "format=pairs&style=conversational")
    chat = [r for r in exported if r["task_id"] == planted.tasks[1].id]
    assert chat and chat[0]["prompt"] == [{"role": "system", "content": "Be terse."},
                                          {"role": "user", "content": "Say hi."}]
    text = next(r for r in exported if r["task_id"] == planted.tasks[0].id)
    assert text["prompt"] == [{"role": "user", "content": "Name a prime."}]
    for row in exported:
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]


def test_ties_are_dropped_or_marked_never_a_preference(client, planted):
    assert not any("tie" in r for r in rows(client, planted, "format=pairs"))
    kept = rows(client, planted, "format=pairs&ties=keep")
    assert sorted(as_tuples(planted, kept)) == sorted(expected_pairs(planted, ties=True))
    ties = [r for r in kept if r["tie"]]
    assert len(kept) == 24 and len(ties) == 1
    assert ties[0]["margin"] == 0 and ties[0]["task_id"] == planted.tasks[1].id


@pytest.mark.parametrize("query, skip", [
    ("include_excluded=true", lambda t, e: False),
    (f"since={OLD.year + 1}-01-01T00:00:00Z", lambda t, e: e.get("excluded") or "created_at" in e),
    (f"until={OLD.year + 1}-01-01T00:00:00Z", lambda t, e: "created_at" not in e),
])
def test_judgment_filters(client, planted, query, skip):
    exported = rows(client, planted, f"format=pairs&{query}")
    assert sorted(as_tuples(planted, exported)) == sorted(expected_pairs(planted, skip=skip))


def test_exclude_flags_drops_pairs_touching_a_flagged_completion(client, planted):
    flagged = planted.completions[2][2].id
    exported = rows(client, planted, "format=pairs&exclude_flags=hallucination")
    expected = [p for p in expected_pairs(planted) if flagged not in p[2:4]]
    assert sorted(as_tuples(planted, exported)) == sorted(expected) and len(exported) == 21
    ratings = rows(client, planted, "format=ratings&exclude_flags=hallucination")
    assert len(ratings) == 23 and flagged not in {r["completion_id"] for r in ratings}


def test_model_version_filter(client, planted):
    second = rows(client, planted, f"format=pairs&model_version_id={planted.versions[1].id}")
    assert {r["task_id"] for r in second} == {planted.tasks[5].id} and len(second) == 3
    assert {r["chosen_model_version_id"] for r in second} == {planted.versions[1].id}
    first = rows(client, planted, f"format=pairs&model_version_id={planted.versions[0].id}")
    assert len(first) == 20 and planted.tasks[5].id not in {r["task_id"] for r in first}
    rankings = rows(client, planted, f"format=rankings&model_version_id={planted.versions[1].id}")
    assert [r["task_id"] for r in rankings] == [planted.tasks[5].id]


def test_rankings_rows_have_the_training_contract(client, planted):
    exported = rows(client, planted, "format=rankings")
    assert len(exported) == 8  # 9 judgments, one excluded
    row = next(r for r in exported if r["judgment_id"] == planted.judgments[1].id)
    ids = [c.id for c in planted.completions[0]]
    assert row == {
        "judgment_id": planted.judgments[1].id, "task_id": planted.tasks[0].id, "prompt_id": planted.prompts[0].id,
        "labeler": labeler_pseudonym(TEST_SECRET, planted.labelers[1].id), "split": "train",
        "prompt": "Name a prime.", "prompt_messages": [{"role": "user", "content": "Name a prime."}],
        "completions": [{"completion_id": cid, "text": planted.text(cid), "rank": rank, "likert": likert,
                         "flags": [], "note": f"note 1.{i}", "model_version_id": planted.versions[0].id}
                        for i, (cid, rank, likert) in enumerate(zip(ids, [1, 2, 3], [7, 4, 1]))],
        "none_acceptable": False, "rationale": "because 1", "prompt_flags": [], "demonstration": None,
        "created_at": row["created_at"]}
    assert row["created_at"].endswith("Z")
    chat = next(r for r in exported if r["task_id"] == planted.tasks[1].id)
    assert chat["prompt_messages"][0] == {"role": "system", "content": "Be terse."}
    assert [c["rank"] for c in chat["completions"]] == [1, 1, 2]
    flagged = next(r for r in exported if r["task_id"] == planted.tasks[2].id)
    assert flagged["completions"][2]["flags"] == ["hallucination"]
    assert next(r for r in exported if r["task_id"] == planted.tasks[5].id)["none_acceptable"] is True


def test_ratings_and_sft(client, planted):
    ratings = rows(client, planted, "format=ratings")
    assert len(ratings) == 24
    likert = [r["likert"] for r in ratings if r["judgment_id"] == planted.judgments[1].id]
    assert likert == [7, 4, 1]
    assert Counter(tuple(r["flags"]) for r in ratings) == Counter({(): 23, ("hallucination",): 1})
    sft = rows(client, planted, "format=sft")
    assert sft == [{
        "messages": [{"role": "user", "content": "Explain tides."},
                     {"role": "assistant", "content": "The moon pulls the sea."}],
        "prompt_id": planted.prompts[2].id, "source": "demonstration", "task_id": planted.tasks[2].id,
        "judgment_id": planted.judgments[5].id, "labeler": labeler_pseudonym(TEST_SECRET, planted.labelers[0].id),
        "completion_id": None, "model_version_id": None, "created_at": sft[0]["created_at"], "split": "train"}]


def test_splits_by_prompt_and_by_user_are_disjoint_and_stable(client, planted):
    query = "format=pairs&splits=0.4,0.3,0.3&seed=11&include_excluded=true"
    by_prompt = rows(client, planted, query)
    assert by_prompt == rows(client, planted, query)  # the same bytes every time
    split_of = {}
    for r in by_prompt:
        assert split_of.setdefault(r["prompt_id"], r["split"]) == r["split"]
    only = {name: rows(client, planted, f"{query}&split={name}") for name in ("train", "validation", "test")}
    assert sum(len(v) for v in only.values()) == len(by_prompt)
    for name, part in only.items():
        assert {r["split"] for r in part} <= {name}
        assert {r["prompt_id"] for r in part} == {p for p, s in split_of.items() if s == name}
    by_user = rows(client, planted, "format=rankings&split_by=user&splits=0.5,0.25,0.25&seed=3&include_excluded=true")
    users = {p.id: p.source_user or f"prompt {p.id}" for p in planted.prompts}
    user_split = {}
    for r in by_user:
        assert user_split.setdefault(users[r["prompt_id"]], r["split"]) == r["split"]


def test_parquet_holds_the_same_rows_as_jsonl(client, planted):
    for query in ("format=pairs&ties=keep", "format=pairs&style=conversational", "format=rankings", "format=ratings",
                  "format=sft"):
        response = export(client, planted, f"{query}&file=parquet")
        assert response.headers["content-type"] == "application/vnd.apache.parquet"
        assert response.headers["content-disposition"].endswith('.parquet"')
        table = pq.read_table(io.BytesIO(response.content))
        assert table.to_pylist() == rows(client, planted, query), query


@pytest.mark.parametrize("query, fragment", [
    ("format=pairs&exclude_flags=nope", "not flags of project"),
    ("format=pairs&model_version_id=999999", "no such model version"),
    ("format=pairs&splits=0.5,0.2,0.2", "summing to 1"),
    ("format=rankings&style=conversational", "applies to format=pairs only"),
    ("format=pairs&formt=x", "formt"),
    ("format=tsv", "format"),
    ("format=pairs&since=2026-01-01T00:00:00", "time zone"),
    ("format=pairs&splits=1,0,0&split=test", "split=test is empty"),
])
def test_bad_options_are_422_naming_the_problem(client, planted, query, fragment):
    response = client.get(f"/api/v1/projects/{planted.project.id}/export?{query}", headers=planted.admin_headers)
    assert response.status_code == 422, response.text
    assert fragment in response.text


def test_labeler_cannot_export_or_snapshot(client, db, planted):
    project = planted.project.id
    export_response = client.get(f"/api/v1/projects/{project}/export?format=pairs", headers=planted.labeler_headers)
    assert export_response.status_code == 403 and export_response.json()["error"]["code"] == "admin_only"
    snap = client.post(f"/api/v1/projects/{project}/snapshots", json={"format": "pairs"},
                       headers=planted.labeler_headers)
    assert snap.status_code == 403
    listing = client.get(f"/api/v1/projects/{project}/snapshots", headers=planted.labeler_headers)
    assert listing.status_code == 403
    # An admin's read-scope token may export, not write a snapshot.
    assert export(client, planted, "format=pairs", headers=planted.read_headers).content
    read_snap = client.post(f"/api/v1/projects/{project}/snapshots", json={"format": "pairs"},
                            headers=planted.read_headers)
    assert read_snap.status_code == 403 and read_snap.json()["error"]["code"] == "insufficient_scope"
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(DatasetSnapshot)) == 0
    assert client.get(f"/api/v1/projects/{project}/export", headers={}).status_code == 401


def test_openapi_documents_every_export_option(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/v1/projects/{project_id}/export"]["get"]
    documented = {p["name"] for p in operation["parameters"]}
    assert documented == {"project_id", *ExportOptions.model_fields}
    assert set(operation["responses"]["200"]["content"]) == {"application/x-ndjson", "application/vnd.apache.parquet"}
    snapshot = spec["paths"]["/api/v1/projects/{project_id}/snapshots"]["post"]
    assert snapshot["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("SnapshotRead")
