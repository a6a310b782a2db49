"""Leasing tasks and submitting judgments over REST: exact overlap, idempotency, validation, K-choose-2 pairs."""

import threading
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import make_engine
from app.labeling import assignments, judgments
from app.labeling.judgments import expand_pairs
from app.labeling.models import Assignment, Comparison, CompletionRating, Judgment, Task, TaskState
from app.labeling.schemas import JudgmentCreate
from app.users.models import Role, Scope
from tests.factories import bearer, make_admin, make_project, make_tasks, make_token, make_user


@given(st.integers(2, 9).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.integers(1, k), min_size=k, max_size=k))))
def test_every_ranking_expands_to_its_pairs(case):
    k, ranks_list = case
    ranks = {100 + i: r for i, r in enumerate(ranks_list)}
    pairs = expand_pairs(ranks)
    assert len(pairs) == k * (k - 1) // 2
    assert {frozenset((a, b)) for a, b, _, _ in pairs} == {frozenset(p) for p in combinations(ranks, 2)}
    for chosen, rejected, margin, tie in pairs:
        assert tie == (ranks[chosen] == ranks[rejected])
        assert margin == ranks[rejected] - ranks[chosen] >= 0
        if tie:
            assert chosen < rejected


@pytest.fixture
def labeling(client, db):
    admin = make_admin(db)
    labelers = [make_user(db, Role.labeler) for _ in range(3)]
    project = make_project(db, admin, k=4, labels_per_task=2, allow_ties=True,
                           labeler_ids=[u.id for u in labelers])
    make_tasks(db, project, n=2, k=4)
    headers = [bearer(make_token(db, u, Scope.label)) for u in labelers]
    return project, labelers, headers


def _body(order: list[int], **extra) -> dict:
    return {"ranks": {str(cid): i + 1 for i, cid in enumerate(order)}, **extra}


def test_lease_submit_and_pairs(client, db, labeling):
    project, _labelers, headers = labeling
    leased = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0])
    assert leased.status_code == 201
    body = leased.json()
    order = [c["id"] for c in body["completions"]]
    assert len(order) == 4 and body["prompt"]["text"].startswith("prompt ")
    again = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0])
    assert again.json()["id"] == body["id"]  # a reload gets the same lease back
    db.expire_all()
    assert db.get(Assignment, body["id"]).display_order == order

    ranking = _body(order, ratings={str(order[0]): {"likert": 7, "flags": ["hallucination"], "note": "good"}},
                    rationale="first is best")
    first = client.post(f"/api/v1/assignments/{body['id']}/judgment", json=ranking,
                        headers={**headers[0], "Idempotency-Key": "key-1"})
    assert first.status_code == 201
    pairs = first.json()["comparisons"]
    assert len(pairs) == 6
    best = order[0]
    assert sum(1 for p in pairs if p["chosen_id"] == best) == 3
    assert {(p["chosen_id"], p["rejected_id"], p["margin"]) for p in pairs if p["chosen_id"] == best} == {
        (best, order[1], 1), (best, order[2], 2), (best, order[3], 3)}

    retry = client.post(f"/api/v1/assignments/{body['id']}/judgment", json=ranking,
                        headers={**headers[0], "Idempotency-Key": "key-1"})
    assert retry.status_code == 201 and retry.json() == first.json()
    changed = client.post(f"/api/v1/assignments/{body['id']}/judgment", json=_body(order[::-1]),
                          headers={**headers[0], "Idempotency-Key": "key-1"})
    assert changed.status_code == 422 and changed.json()["error"]["code"] == "idempotency_key_reused"
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Judgment)) == 1
    assert db.scalar(select(func.count()).select_from(Comparison)) == 6
    rating = db.scalar(select(CompletionRating).where(CompletionRating.completion_id == best))
    assert (rating.rank, rating.likert, rating.flags, rating.note) == (1, 7, ["hallucination"], "good")
    task = db.get(Task, body["task_id"])
    assert (task.labels_done, task.state) == (1, TaskState.open)


def test_every_field_is_stored_as_submitted(client, db, labeling, backend):
    """PostgreSQL writes a submission in one statement, SQLite in several: both store the same rows."""
    project, _labelers, headers = labeling
    task_ids = []
    for n in (0, 1):  # the task's two labels (the queue finishes started tasks first): the second completes it
        a = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[n]).json()
        o = [c["id"] for c in a["completions"]]
        task_ids.append(a["task_id"])
        ranking = {"ranks": {str(o[0]): 2, str(o[1]): 1, str(o[2]): 2, str(o[3]): 4},
                   "ratings": {str(o[2]): {"likert": 3, "flags": ["hallucination", "hallucination"], "note": "n"},
                               str(o[1]): {"likert": None, "flags": [], "note": "só"}},
                   "rationale": "second wins", "none_acceptable": True, "prompt_flags": ["b", "a", "b"],
                   "demonstration": "ideal", "duration_ms": 1234}
        answer = client.post(f"/api/v1/assignments/{a['id']}/judgment", json=ranking,
                             headers={**headers[n], "Idempotency-Key": f"every-{n}"})
        assert answer.status_code == 201
    db.expire_all()
    judgment = db.get(Judgment, answer.json()["id"])
    assert (judgment.task_id, judgment.assignment_id, judgment.idempotency_key, judgment.rationale,
            judgment.none_acceptable, judgment.prompt_flags, judgment.demonstration, judgment.duration_ms,
            judgment.revision, judgment.excluded) == (
        a["task_id"], a["id"], "every-1", "second wins", True, ["a", "b"], "ideal", 1234, 1, False)
    ratings = {r.completion_id: (r.rank, r.likert, r.flags, r.note) for r in db.scalars(
        select(CompletionRating).where(CompletionRating.judgment_id == judgment.id))}
    assert ratings == {o[0]: (2, None, [], ""), o[1]: (1, None, [], "só"),
                       o[2]: (2, 3, ["hallucination"], "n"), o[3]: (4, None, [], "")}
    stored = [{"chosen_id": c.chosen_id, "rejected_id": c.rejected_id, "margin": c.margin, "is_tie": c.is_tie}
              for c in db.scalars(select(Comparison).where(Comparison.judgment_id == judgment.id).order_by(Comparison.id))]
    assert stored == answer.json()["comparisons"] == [
        {"chosen_id": c, "rejected_id": r, "margin": m, "is_tie": t}
        for c, r, m, t in expand_pairs({o[0]: 2, o[1]: 1, o[2]: 2, o[3]: 4})]
    assert {c.task_id for c in db.scalars(select(Comparison))} == {a["task_id"]} and task_ids == [a["task_id"]] * 2
    assert db.get(Assignment, a["id"]).state == "submitted"
    task = db.get(Task, a["task_id"])
    assert (task.labels_done, task.state) == (2, TaskState.complete)


def test_exact_overlap_and_never_twice_for_one_labeler(client, db, labeling):
    project, _labelers, headers = labeling
    seen: dict[int, list[int]] = {}
    for n, h in enumerate(headers):
        for round_ in range(3):
            leased = client.post(f"/api/v1/projects/{project.id}/assignments", headers=h)
            if leased.status_code == 204:
                break
            a = leased.json()
            seen.setdefault(a["task_id"], []).append(n)
            ok = client.post(f"/api/v1/assignments/{a['id']}/judgment", json=_body([c["id"] for c in a["completions"]]),
                             headers={**h, "Idempotency-Key": f"{n}-{round_}"})
            assert ok.status_code == 201
    assert sorted(len(v) for v in seen.values()) == [2, 2]  # 2 tasks x 2 labels, no more
    assert all(len(set(v)) == len(v) for v in seen.values())
    db.expire_all()
    assert {t.state for t in db.scalars(select(Task))} == {TaskState.complete}
    assert client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[2]).status_code == 204


@pytest.mark.parametrize("mutate, fragment", [
    (lambda o: {"ranks": {str(c): i + 1 for i, c in enumerate(o[:3])}}, "have no rank"),
    (lambda o: {"ranks": {**{str(c): i + 1 for i, c in enumerate(o)}, "999999": 2}}, "not in this task"),
    (lambda o: {"ranks": {str(c): i + 2 for i, c in enumerate(o)}}, "between 1 and 4"),
    (lambda o: {"ranks": {str(c): 1 for c in o}, "ratings": {str(o[0]): {"likert": 0}}}, "scale is 1 to 7"),
    (lambda o: {"ranks": {str(c): i + 1 for i, c in enumerate(o)}, "ratings": {str(o[0]): {"likert": 8}}},
     "scale is 1 to 7"),
    (lambda o: {"ranks": {str(c): i + 1 for i, c in enumerate(o)}, "ratings": {str(o[0]): {"flags": ["nope"]}}},
     "not in the project's rating form"),
])
def test_bad_judgments_are_422_and_write_nothing(client, db, labeling, mutate, fragment):
    project, _labelers, headers = labeling
    a = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0]).json()
    response = client.post(f"/api/v1/assignments/{a['id']}/judgment", json=mutate([c["id"] for c in a["completions"]]),
                           headers={**headers[0], "Idempotency-Key": "k"})
    assert response.status_code == 422 and fragment in response.json()["error"]["message"]
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Judgment)) == 0
    assert db.scalar(select(func.count()).select_from(Comparison)) == 0


def test_ties_only_when_allowed(client, db):
    admin = make_admin(db)
    labeler = make_user(db)
    project = make_project(db, admin, k=2, labels_per_task=1, allow_ties=False, labeler_ids=[labeler.id])
    make_tasks(db, project, n=1, k=2)
    h = bearer(make_token(db, labeler, Scope.label))
    a = client.post(f"/api/v1/projects/{project.id}/assignments", headers=h).json()
    ids = [c["id"] for c in a["completions"]]
    tie = client.post(f"/api/v1/assignments/{a['id']}/judgment", json={"ranks": {str(i): 1 for i in ids}},
                      headers={**h, "Idempotency-Key": "t"})
    assert tie.status_code == 422 and "does not allow ties" in tie.json()["error"]["message"]


def test_other_labelers_cannot_use_an_assignment_and_read_tokens_cannot_label(client, db, labeling):
    project, labelers, headers = labeling
    a = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0]).json()
    body = _body([c["id"] for c in a["completions"]])
    stolen = client.post(f"/api/v1/assignments/{a['id']}/judgment", json=body, headers={**headers[1], "Idempotency-Key": "x"})
    assert stolen.status_code == 404
    read_only = bearer(make_token(db, labelers[0], Scope.read))
    assert client.post(f"/api/v1/projects/{project.id}/assignments", headers=read_only).status_code == 403
    outsider = make_user(db)
    assert client.post(f"/api/v1/projects/{project.id}/assignments",
                       headers=bearer(make_token(db, outsider, Scope.label))).status_code == 404


def test_skip_gives_the_slot_to_another_labeler(client, db, labeling):
    project, _labelers, headers = labeling
    a = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0]).json()
    assert client.post(f"/api/v1/assignments/{a['id']}/skip", json={"reason": "not my language"},
                       headers=headers[0]).status_code == 204
    nxt = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0]).json()
    assert nxt["task_id"] != a["task_id"]  # never shown the skipped task again
    db.expire_all()
    assert db.get(Assignment, a["id"]).skip_reason == "not my language"


def test_fifty_labelers_at_once_never_over_collect(backend, fresh_database_url):
    """50 labelers lease and submit concurrently on tasks needing 3 labels each."""
    engine = make_engine(fresh_database_url, pool_size=60, max_overflow=0) if backend == "postgresql" else \
        make_engine(fresh_database_url)
    with Session(engine) as db:
        admin = make_admin(db)
        labelers = [make_user(db, Role.labeler) for _ in range(50)]
        project = make_project(db, admin, k=3, labels_per_task=3, labeler_ids=[u.id for u in labelers])
        make_tasks(db, project, n=10, k=3)
        project_id, user_ids = project.id, [u.id for u in labelers]
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def labeler(user_id: int) -> None:
        try:
            barrier.wait()
            for round_ in range(4):
                with Session(engine) as session:
                    from app.users.models import User

                    user = session.get(User, user_id)
                    lease = assignments.lease_next(session=session, project_id=project_id, user=user)
                    session.commit()
                    if lease is None:
                        return
                    order = [cid for cid, _text in lease.completions]
                    judgments.submit_judgment(session=session, assignment_id=lease.id, user=user,
                                              body=JudgmentCreate(ranks={str(c): i + 1 for i, c in enumerate(order)}),
                                              idempotency_key=f"{user_id}-{round_}")
                    session.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=labeler, args=(uid,)) for uid in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with Session(engine) as db:
        per_task = dict(db.execute(select(Judgment.task_id, func.count()).group_by(Judgment.task_id)).all())
        assert per_task == {t: 3 for t in db.scalars(select(Task.id))}  # every task exactly 3, none over
        pairs = db.execute(select(Judgment.task_id, Judgment.user_id)).all()
        assert len(pairs) == len(set(pairs)) == 30
        assert {t.labels_done for t in db.scalars(select(Task))} == {3}
    engine.dispose()


def test_revising_a_judgment_replaces_its_pairs(client, db, labeling):
    project, _labelers, headers = labeling
    a = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0]).json()
    order = [c["id"] for c in a["completions"]]
    first = client.post(f"/api/v1/assignments/{a['id']}/judgment", json=_body(order),
                        headers={**headers[0], "Idempotency-Key": "first"}).json()
    detail = client.get(f"/api/v1/judgments/{first['id']}", headers=headers[0]).json()
    assert detail["display_order"] == order and detail["ranks"] == {str(c): i + 1 for i, c in enumerate(order)}
    assert [c["id"] for c in detail["completions"]] == order

    revised_body = _body(order[::-1], rationale="on second thought")
    revised = client.put(f"/api/v1/judgments/{first['id']}", json=revised_body,
                         headers={**headers[0], "Idempotency-Key": "second"})
    assert revised.status_code == 200 and revised.json()["revision"] == 2
    again = client.put(f"/api/v1/judgments/{first['id']}", json=revised_body,
                       headers={**headers[0], "Idempotency-Key": "second"})
    assert again.json() == revised.json()  # a retried revision changes nothing more
    db.expire_all()
    pairs = {(c.chosen_id, c.rejected_id) for c in db.scalars(select(Comparison))}
    assert len(pairs) == 6 and (order[-1], order[0]) in pairs and (order[0], order[-1]) not in pairs
    assert db.scalar(select(func.count()).select_from(Judgment)) == 1
    task = db.get(Task, a["task_id"])
    assert task.labels_done == 1  # a revision is not another label
    listed = client.get(f"/api/v1/judgments?project_id={project.id}", headers=headers[0]).json()["items"]
    assert [j["id"] for j in listed] == [first["id"]]
    assert client.get(f"/api/v1/judgments/{first['id']}", headers=headers[1]).status_code == 404
    bad = client.put(f"/api/v1/judgments/{first['id']}", json={"ranks": {"1": 1}},
                     headers={**headers[0], "Idempotency-Key": "third"})
    assert bad.status_code == 422
    db.expire_all()
    assert db.get(Judgment, first["id"]).revision == 2


def test_an_expired_lease_goes_back_to_the_queue(client, db, labeling):
    from datetime import timedelta

    from app.db import utcnow

    project, _labelers, headers = labeling
    project.labels_per_task = 1
    for task in db.scalars(select(Task)):
        task.labels_needed = 1
    db.commit()
    held = [client.post(f"/api/v1/projects/{project.id}/assignments", headers=h).json() for h in headers[:2]]
    assert client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[2]).status_code == 204
    db.get(Assignment, held[0]["id"]).lease_expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    taken_over = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[2])
    assert taken_over.status_code == 201 and taken_over.json()["task_id"] == held[0]["task_id"]
