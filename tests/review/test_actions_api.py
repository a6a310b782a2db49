"""Review actions over REST on SQLite and PostgreSQL: exclusion, reopen, gold tasks, the review queue."""

from sqlalchemy import select

from app.labeling.models import Judgment, Task, TaskState
from app.labeling.schemas import RatingIn
from app.users.models import Role, Scope
from tests.factories import bearer, make_project, make_token, make_user
from tests.review.helpers import by_position, label, make_tasks, make_versions


def agreement(client, headers, project) -> dict:
    response = client.get(f"/api/v1/projects/{project.id}/agreement", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_excluded_judgments_leave_every_figure_and_come_back(client, db, admin, admin_headers):
    users = [make_user(db, Role.labeler, username=n) for n in ("ann", "bob", "cid")]
    project = make_project(db, admin, k=3, labels_per_task=3, labeler_ids=[u.id for u in users])
    make_tasks(db, project, n=2, versions=make_versions(db, "v1"))
    for user, plan in zip(users, (by_position(1, 2, 3), by_position(1, 2, 3), by_position(3, 2, 1)), strict=True):
        label(db, project, user, plan)
        label(db, project, user, plan)
    before = agreement(client, admin_headers, project)
    assert before["tasks"][0]["agreement"]["n"] == 3 and before["tasks"][0]["agreement"]["mean_tau_b"] < 0.5

    # cid disagrees: exclude one of cid's judgments.
    cid_judgment = db.scalar(select(Judgment).where(Judgment.user_id == users[2].id).order_by(Judgment.id))
    response = client.post(f"/api/v1/judgments/{cid_judgment.id}/exclude", json={"reason": "ranked backwards"},
                           headers=admin_headers)
    assert response.status_code == 200
    assert response.json() == {"id": cid_judgment.id, "task_id": cid_judgment.task_id, "user_id": users[2].id,
                                    "excluded": True, "excluded_reason": "ranked backwards"}
    after = agreement(client, admin_headers, project)
    row = next(t for t in after["tasks"] if t["task_id"] == cid_judgment.task_id)
    assert row["agreement"] == {"n": 2, "kendall_w": 1.0, "mean_tau_b": 1.0, "pair_agreement": 1.0}
    assert row["excluded"] == 1
    assert after["progress"]["judgments"] == 5 and after["progress"]["excluded_judgments"] == 1
    assert after["progress"]["pairs"] == 15  # 5 included judgments x 3 pairs
    cid_row = next(r for r in after["labelers"] if r["username"] == "cid")
    assert (cid_row["judgments"], cid_row["excluded_judgments"]) == (1, 1)

    # The task review shows it, marked, beside the others.
    review = client.get(f"/api/v1/tasks/{cid_judgment.task_id}/review", headers=admin_headers).json()
    marked = {j["username"]: (j["excluded"], j["excluded_reason"]) for j in review["judgments"]}
    assert marked == {"ann": (False, None), "bob": (False, None), "cid": (True, "ranked backwards")}
    assert review["agreement"]["n"] == 2

    assert client.post(f"/api/v1/judgments/{cid_judgment.id}/include", headers=admin_headers).json()["excluded"] is False
    assert agreement(client, admin_headers, project)["tasks"] == before["tasks"]


def test_excluding_a_labeler_covers_later_judgments_and_is_reversible(client, db, admin, admin_headers):
    users = [make_user(db, Role.labeler) for _ in range(2)]
    project = make_project(db, admin, k=2, labels_per_task=2, labeler_ids=[u.id for u in users])
    make_tasks(db, project, n=3, versions=make_versions(db, "v1"))
    bad = users[1]
    label(db, project, bad, by_position(1, 2))
    label(db, project, bad, by_position(2, 1))
    first = db.scalar(select(Judgment).where(Judgment.user_id == bad.id).order_by(Judgment.id))
    client.post(f"/api/v1/judgments/{first.id}/exclude", json={"reason": "spam"}, headers=admin_headers)

    response = client.post(f"/api/v1/projects/{project.id}/labelers/{bad.id}/exclude", json={"reason": "random clicks"},
                           headers=admin_headers)
    assert response.status_code == 200
    assert response.json() == {"project_id": project.id, "user_id": bad.id, "excluded": True, "changed": 1}
    later = label(db, project, bad, by_position(1, 2))  # submitted after the exclusion
    db.expire_all()
    rows = {j.id: (j.excluded, j.excluded_reason) for j in db.scalars(select(Judgment).where(Judgment.user_id == bad.id))}
    assert rows[first.id] == (True, "spam")
    assert rows[later.id] == (True, "labeler excluded: random clicks")
    assert sum(1 for excluded, _ in rows.values() if excluded) == 3
    figures = agreement(client, admin_headers, project)
    [row] = [r for r in figures["labelers"] if r["user_id"] == bad.id]
    assert (row["judgments"], row["excluded_judgments"], row["labeler_excluded"]) == (0, 3, True)

    back = client.post(f"/api/v1/projects/{project.id}/labelers/{bad.id}/include", headers=admin_headers)
    assert back.json() == {"project_id": project.id, "user_id": bad.id, "excluded": False, "changed": 2}
    db.expire_all()
    rows = {j.id: j.excluded for j in db.scalars(select(Judgment).where(Judgment.user_id == bad.id))}
    assert rows == {first.id: True, later.id: False, **{jid: False for jid in rows if jid not in (first.id, later.id)}}
    unknown = client.post(f"/api/v1/projects/{project.id}/labelers/999999/exclude", json={}, headers=admin_headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "user_not_found"


def test_reopen_gets_more_labels_with_exact_overlap(client, db, admin, admin_headers):
    users = [make_user(db, Role.labeler) for _ in range(4)]
    project = make_project(db, admin, k=2, labels_per_task=2, labeler_ids=[u.id for u in users])
    [task] = make_tasks(db, project, n=1, versions=make_versions(db, "v1"))
    label(db, project, users[0], by_position(1, 2))
    label(db, project, users[1], by_position(1, 2))
    assert label(db, project, users[2], by_position(1, 2)) is None  # complete: nothing to lease

    response = client.post(f"/api/v1/tasks/{task.id}/reopen", json={"extra_labels": 1}, headers=admin_headers)
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["labels_needed"], response.json()["labels_done"]) == ("open", 3, 2)
    headers = [bearer(make_token(db, u, Scope.label)) for u in users]
    leased = client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[2])
    assert leased.status_code == 201 and leased.json()["task_id"] == task.id
    assert client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[3]).status_code == 204
    assert client.post(f"/api/v1/projects/{project.id}/assignments", headers=headers[0]).status_code == 204
    ids = [c["id"] for c in leased.json()["completions"]]
    submitted = client.post(f"/api/v1/assignments/{leased.json()['id']}/judgment",
                            json={"ranks": {str(ids[0]): 1, str(ids[1]): 2}},
                            headers={**headers[2], "Idempotency-Key": "more"})
    assert submitted.status_code == 201
    db.expire_all()
    assert (db.get(Task, task.id).state, db.get(Task, task.id).labels_done) == (TaskState.complete, 3)
    bad = client.post(f"/api/v1/tasks/{task.id}/reopen", json={"extra_labels": 0}, headers=admin_headers)
    assert bad.status_code == 422 and "extra_labels" in bad.json()["error"]["message"]


def test_gold_tasks_mix_in_at_the_rate_and_measure_labelers(client, db, admin, admin_headers):
    users = [make_user(db, Role.labeler, username=n) for n in ("ann", "bob")]
    project = make_project(db, admin, k=3, labels_per_task=1, labeler_ids=[u.id for u in users])
    tasks = make_tasks(db, project, n=10, versions=make_versions(db, "v1"))
    gold_tasks = tasks[6:]
    for task in gold_tasks:
        review = client.get(f"/api/v1/tasks/{task.id}/review", headers=admin_headers).json()
        ids = [c["id"] for c in review["completions"]]
        response = client.put(f"/api/v1/tasks/{task.id}/gold", json={"ranks": {str(ids[0]): 1, str(ids[1]): 2,
                                                                                 str(ids[2]): 3}},
                              headers=admin_headers)
        assert response.status_code == 200 and response.json()["gold_ranks"] == {str(ids[0]): 1, str(ids[1]): 2,
                                                                                  str(ids[2]): 3}
    patched = client.patch(f"/api/v1/projects/{project.id}", json={"gold_rate": 0.5}, headers=admin_headers)
    assert patched.status_code == 200 and patched.json()["gold_rate"] == 0.5

    gold_ids = {t.id for t in gold_tasks}
    for user, plan in ((users[0], by_position(1, 2, 3)), (users[1], by_position(3, 2, 1))):
        seen = [label(db, project, user, plan).task_id for _ in range(6)]
        # Every second lease is gold (floor(0.5 n) after n leases), never the same gold task twice.
        assert [tid in gold_ids for tid in seen] == [False, True, False, True, False, True]
        assert len(set(seen)) == 6
    figures = {r["username"]: r for r in agreement(client, admin_headers, project)["labelers"]}
    assert (figures["ann"]["gold_accuracy"], figures["ann"]["gold_judgments"]) == (1.0, 3)
    assert (figures["bob"]["gold_accuracy"], figures["bob"]["gold_judgments"]) == (0.0, 3)
    # Gold tasks took both labelers though each needs one label; ordinary tasks took exactly one.
    db.expire_all()
    done = {t.id: t.labels_done for t in db.scalars(select(Task).where(Task.project_id == project.id))}
    # (gold goes to the least-labeled first: ann took gold 1-3, bob gold 4, 1, 2).
    assert [done[t.id] for t in gold_tasks] == [2, 2, 1, 1] and sum(done[t.id] for t in tasks[:6]) == 6


def test_bad_gold_rankings_are_refused_and_gold_can_be_cleared(client, db, admin, admin_headers):
    project = make_project(db, admin, k=3, labels_per_task=1, allow_ties=False)
    [task] = make_tasks(db, project, n=1, versions=make_versions(db, "v1"))
    ids = [c["id"] for c in client.get(f"/api/v1/tasks/{task.id}/review", headers=admin_headers).json()["completions"]]
    for ranks, fragment in (({str(ids[0]): 1, str(ids[1]): 2}, "exactly the task's completions"),
                            ({str(ids[0]): 1, str(ids[1]): 2, str(ids[2]): 4}, "ranks run from 1"),
                            ({str(ids[0]): 1, str(ids[1]): 1, str(ids[2]): 2}, "does not allow ties")):
        response = client.put(f"/api/v1/tasks/{task.id}/gold", json={"ranks": ranks}, headers=admin_headers)
        assert response.status_code == 422 and fragment in response.json()["error"]["message"]
    db.expire_all()
    assert db.get(Task, task.id).gold_ranks is None
    client.put(f"/api/v1/tasks/{task.id}/gold", json={"ranks": {str(i): n + 1 for n, i in enumerate(ids)}},
               headers=admin_headers)
    cleared = client.delete(f"/api/v1/tasks/{task.id}/gold", headers=admin_headers)
    assert cleared.status_code == 200 and cleared.json()["gold_ranks"] is None
    db.expire_all()
    assert db.scalar(select(Task.id).where(Task.gold_ranks.is_(None))) == task.id  # SQL NULL, not JSON null


def test_review_queue_lists_low_agreement_harmful_flags_and_reports(client, db, admin, admin_headers):
    users = [make_user(db, Role.labeler) for _ in range(2)]
    project = make_project(db, admin, k=2, labels_per_task=2, labeler_ids=[u.id for u in users])
    tasks = make_tasks(db, project, n=2, versions=make_versions(db, "v1"))

    def harmful(_cid: int, rank: int) -> RatingIn:
        return RatingIn(flags=["harmful_advice", "hallucination"] if rank == 2 else [])

    # Task 1: the two disagree, and the loser is flagged harmful by the first; task 2: agreement.
    label(db, project, users[0], by_position(1, 2), ratings=harmful, prompt_flags=["reported"], rationale="unsafe ask")
    label(db, project, users[1], by_position(2, 1))
    label(db, project, users[0], by_position(1, 2))
    label(db, project, users[1], by_position(1, 2))
    body = client.get(f"/api/v1/projects/{project.id}/review-queue", headers=admin_headers).json()
    assert body["threshold"] == 0.2
    assert [t["task_id"] for t in body["low_agreement"]] == [tasks[0].id]
    assert body["low_agreement"][0]["agreement"]["mean_tau_b"] == -1.0
    [flagged] = body["flagged"]
    assert flagged["task_id"] == tasks[0].id and flagged["flags"] == {"harmful_advice": 1}
    assert flagged["text"].startswith("answer 0.")
    [reported] = body["reported"]
    assert (reported["task_id"], reported["reports"], reported["rationales"]) == (tasks[0].id, 1, ["unsafe ask"])
    everything = client.get(f"/api/v1/projects/{project.id}/review-queue?threshold=1", headers=admin_headers).json()
    assert len(everything["low_agreement"]) == 1  # task 2 agrees fully (tau-b 1 is not below 1)
    labeler = bearer(make_token(db, users[0], Scope.read))
    assert client.get(f"/api/v1/projects/{project.id}/review-queue", headers=labeler).status_code == 403


def test_leasing_asks_nothing_about_gold_while_the_rate_is_zero(db, admin):
    from sqlalchemy import event

    from app.labeling import assignments

    user = make_user(db, Role.labeler)
    project = make_project(db, admin, k=2, labels_per_task=1, labeler_ids=[user.id])
    make_tasks(db, project, n=2, versions=make_versions(db, "v1"))
    statements: list[str] = []
    bind = db.get_bind()
    listener = lambda _conn, _cursor, sql, *_rest: statements.append(sql)  # noqa: E731
    event.listen(bind, "before_cursor_execute", listener)
    try:
        assert assignments.lease_next(session=db, project_id=project.id, user=user) is not None
        db.commit()
        without_gold = list(statements)
        project.gold_rate = 0.5
        db.commit()
        statements.clear()
        assignments.lease_next(session=db, project_id=project.id, user=admin)  # one who has not leased yet
    finally:
        event.remove(bind, "before_cursor_execute", listener)
    assert without_gold and not any("gold_ranks IS NOT NULL" in s or "count(task.gold_ranks)" in s for s in without_gold)
    assert any("count(task.gold_ranks)" in s for s in statements)  # the check sees the gold query when it runs
