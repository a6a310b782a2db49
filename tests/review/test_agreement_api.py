"""GET /projects/{id}/agreement on SQLite and PostgreSQL: the figures match the metrics on what was submitted."""

import random

import krippendorff
import numpy as np
import pytest
from sqlalchemy import select

from app.labeling.models import CompletionRating, Judgment
from app.labeling.schemas import RatingIn
from app.review.metrics import consensus, task_agreement
from app.users.models import Role, Scope
from tests.factories import bearer, make_project, make_token, make_user
from tests.review.helpers import by_position, label, make_tasks, make_versions


@pytest.fixture
def labeled(db, admin):
    """3 tasks of K=3, each judged by the same 3 labelers with known rankings, Likert and flags."""
    labelers = [make_user(db, Role.labeler, username=name) for name in ("ann", "bob", "cid")]
    project = make_project(db, admin, k=3, labels_per_task=3, labeler_ids=[u.id for u in labelers])
    make_tasks(db, project, n=3, versions=make_versions(db, "v1"))
    plans = {"ann": by_position(1, 2, 3), "bob": by_position(1, 3, 2), "cid": by_position(2, 1, 2)}

    def ratings(cid: int, rank: int) -> RatingIn:
        return RatingIn(likert=8 - 2 * rank, flags=["hallucination"] if rank == 3 else [])

    for n, user in enumerate(labelers):
        for _ in range(3):
            label(db, project, user, plans[user.username], duration_ms=10_000 * (n + 1), ratings=ratings)
    return project, labelers


def test_agreement_matches_the_metrics_on_what_was_submitted(client, db, admin_headers, labeled):
    project, labelers = labeled
    response = client.get(f"/api/v1/projects/{project.id}/agreement", headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()

    db.expire_all()
    rows = list(db.scalars(select(Judgment).order_by(Judgment.id)))
    assert len(rows) == 9
    submitted = {}  # task -> user -> ranks, read back from the database
    for j in rows:
        submitted.setdefault(j.task_id, {})[j.user_id] = {
            r.completion_id: r.rank for r in db.scalars(select(CompletionRating).where(CompletionRating.judgment_id == j.id))}
    progress = body["progress"]
    assert (progress["tasks"], progress["tasks_done"], progress["tasks_ready"], progress["judgments"],
            progress["excluded_judgments"], progress["pairs"]) == (3, 3, 0, 9, 0, 27)
    assert body["tasks_total"] == 3
    for row in body["tasks"]:
        rankings = list(submitted[row["task_id"]].values())
        expected = task_agreement(rankings)
        assert row["agreement"] == pytest.approx({"n": 3, "kendall_w": expected.kendall_w,
                                                  "mean_tau_b": expected.mean_tau_b,
                                                  "pair_agreement": expected.pair_agreement})
        assert row["consensus"]["ranks"] == {str(k): v for k, v in consensus(rankings).ranks.items()}
        # Likert is 8 - 2 x rank; ranks per completion differ by labeler, so the spread is theirs.
        spreads = [np.std([8 - 2 * r[c] for r in rankings]) for c in rankings[0]]
        assert row["likert_spread"] == pytest.approx(np.mean(spreads))

    # Ordinal alpha over (task, completion) units against the krippendorff package.
    order = sorted(u.id for u in labelers)
    units = [(t, c) for t in sorted(submitted) for c in sorted(submitted[t][order[0]])]
    data = np.array([[submitted[t][u][c] for t, c in units] for u in order], dtype=float)
    assert body["alpha"]["ranks"] == pytest.approx(krippendorff.alpha(reliability_data=data,
                                                                      level_of_measurement="ordinal"))
    likert = 8 - 2 * data
    assert body["alpha"]["likert"] == pytest.approx(krippendorff.alpha(reliability_data=likert,
                                                                       level_of_measurement="interval"))
    flags = (data == 3).astype(float)
    assert body["alpha"]["flags"]["hallucination"] == pytest.approx(
        krippendorff.alpha(reliability_data=flags, level_of_measurement="nominal"))
    assert body["alpha"]["flags"]["sexual_content"] is None  # never given: nothing to agree on

    people = {row["username"]: row for row in body["labelers"]}
    assert people["ann"]["median_seconds"] == 10 and people["cid"]["median_seconds"] == 30
    assert all(row["judgments"] == 3 and row["compared"] == 3 for row in people.values())
    assert people["ann"]["flag_rate"] == pytest.approx(1 / 3)
    assert people["cid"]["flag_rate"] == 0  # cid never gives rank 3
    assert people["ann"]["first_shown_chance"] == pytest.approx(1 / 3)
    assert not any(row["outlier"] for row in people.values())  # 3 judgments each: too few to mark
    [period] = body["over_time"]
    assert period["tasks"] == 3 and period["alpha_ranks"] == pytest.approx(body["alpha"]["ranks"])
    assert sum(day["judgments"] for day in body["throughput"]) == 9
    assert body["leaderboard"] == []  # one model version


def test_first_shown_top_follows_the_stored_display_order(client, db, admin_headers, admin):
    user = make_user(db, Role.labeler)
    project = make_project(db, admin, k=4, labels_per_task=1, labeler_ids=[user.id])
    make_tasks(db, project, n=8, versions=make_versions(db, "v1"))
    # A labeler who always ranks what was shown first as best: full position bias.
    for _ in range(8):
        label(db, project, user, lambda shown, _task: {cid: place + 1 for place, cid in enumerate(shown)})
    [row] = client.get(f"/api/v1/projects/{project.id}/agreement", headers=admin_headers).json()["labelers"]
    assert row["first_shown_top"] == 1.0 and row["first_shown_chance"] == 0.25
    assert row["agreement"] is None and row["compared"] == 0  # nobody else labeled these tasks


def test_planted_random_labeler_is_marked_outlier(client, db, admin_headers, admin):
    rng = random.Random(4)
    good = [make_user(db, Role.labeler, username=f"good{i}") for i in range(5)]
    bad = make_user(db, Role.labeler, username="random")
    # Five labels per task: the consensus of the four others outvotes the random labeler.
    project = make_project(db, admin, k=4, labels_per_task=5, labeler_ids=[u.id for u in good + [bad]])
    make_tasks(db, project, n=12, versions=make_versions(db, "v1"))
    truth = by_position(1, 2, 3, 4)

    def noisy(shown, task):
        ranks = truth(shown, task)
        if rng.random() < 0.25:  # now and then swap the two worst
            a, b = sorted(ranks, key=ranks.get)[2:]
            ranks[a], ranks[b] = ranks[b], ranks[a]
        return ranks

    def random_order(shown, _task):
        return {cid: place + 1 for place, cid in enumerate(rng.sample(sorted(shown), len(shown)))}

    for _round in range(10):
        for user in good + [bad]:
            label(db, project, user, random_order if user is bad else noisy)
    body = client.get(f"/api/v1/projects/{project.id}/agreement", headers=admin_headers).json()
    people = {row["username"]: row for row in body["labelers"]}
    assert people["random"]["judgments"] == people["random"]["compared"] == 10
    assert [name for name, row in people.items() if row["outlier"]] == ["random"]
    assert people["random"]["z_score"] < -2.5
    assert min(people[f"good{i}"]["agreement"] for i in range(5)) > 0.5


def test_leaderboard_puts_the_planted_better_version_first(client, db, admin_headers, admin):
    users = [make_user(db, Role.labeler) for _ in range(2)]
    project = make_project(db, admin, k=2, labels_per_task=2, labeler_ids=[u.id for u in users])
    old, new = make_versions(db, "old policy", "new policy")
    make_tasks(db, project, n=12, versions=[old, new])
    rng = random.Random(1)
    for _ in range(12):
        for user in users:
            # Position 1 holds the new policy's completion; it wins 5 times in 6.
            label(db, project, user, by_position(2, 1) if rng.random() < 5 / 6 else by_position(1, 2))
    board = client.get(f"/api/v1/projects/{project.id}/agreement", headers=admin_headers).json()["leaderboard"]
    assert [row["name"] for row in board] == ["new policy", "old policy"]
    assert board[0]["pairs"] == 24 and board[0]["low"] < board[0]["score"] < board[0]["high"]
    assert board[0]["rating"] > 1000 > board[1]["rating"]


def test_only_admins_see_agreement(client, db, admin, labeled):
    project, labelers = labeled
    token = make_token(db, labelers[0], Scope.label)
    denied = client.get(f"/api/v1/projects/{project.id}/agreement", headers=bearer(token))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "admin_only"
    missing = client.get("/api/v1/projects/999999/agreement", headers=bearer(make_token(db, admin)))
    assert missing.status_code == 404


def test_task_paging_lowest_agreement_first(client, db, admin_headers, labeled):
    project, _ = labeled
    first = client.get(f"/api/v1/projects/{project.id}/agreement?task_limit=2", headers=admin_headers).json()
    rest = client.get(f"/api/v1/projects/{project.id}/agreement?task_limit=2&task_offset=2",
                      headers=admin_headers).json()
    taus = [t["agreement"]["mean_tau_b"] for t in first["tasks"] + rest["tasks"]]
    assert len(first["tasks"]) == 2 and len(rest["tasks"]) == 1 and taus == sorted(taus)
    assert len({t["task_id"] for t in first["tasks"] + rest["tasks"]}) == 3
    bad = client.get(f"/api/v1/projects/{project.id}/agreement?task_limit=-1", headers=admin_headers)
    assert bad.status_code == 422 and "task_limit" in bad.json()["error"]["message"]
