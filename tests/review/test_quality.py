"""Labeler quality and the model leaderboard on synthetic data with a planted structure."""

import random

import pytest

from app.review.metrics import consensus, tau_b
from app.review.quality import (
    OUTLIER_Z, first_shown_top, gold_accuracy, likert_spread, outliers, robust_z, version_ratings,
)
from tests.review.test_metrics import noisy_copy, random_ranking


def test_first_shown_top_counts_a_shared_first_place_as_a_fraction():
    assert first_shown_top({1: 1, 2: 2, 3: 3}, [1, 3, 2]) == 1.0
    assert first_shown_top({1: 2, 2: 1, 3: 3}, [1, 3, 2]) == 0.0
    assert first_shown_top({1: 1, 2: 1, 3: 2}, [1, 3, 2]) == 0.5
    assert first_shown_top({1: 1, 2: 1, 3: 1}, [3, 1, 2]) == pytest.approx(1 / 3)
    assert first_shown_top({1: 1}, []) == 0.0


def test_gold_accuracy_is_the_share_of_pairs_on_the_gold_side():
    gold = {1: 1, 2: 2, 3: 3}
    assert gold_accuracy({1: 1, 2: 2, 3: 3}, gold) == 1.0
    assert gold_accuracy({1: 2, 2: 1, 3: 3}, gold) == pytest.approx(2 / 3)  # (1,2) flipped
    assert gold_accuracy({1: 1, 2: 1, 3: 2}, gold) == pytest.approx(2 / 3)  # (1,2) tied: wrong side
    assert gold_accuracy({1: 3, 2: 2, 3: 1}, gold) == 0.0
    assert gold_accuracy({1: 1}, gold) is None


def test_likert_spread_is_the_mean_standard_deviation():
    # [4, 6]: sd 1; [7, 7, 7]: 0; [2] alone is left out.
    assert likert_spread([[4, 6], [7, 7, 7], [2]]) == pytest.approx(0.5)
    assert likert_spread([[3]]) is None


def test_planted_random_labeler_is_marked_and_only_them():
    rng = random.Random(11)
    ids = [1, 2, 3, 4, 5]
    labelers = list(range(100, 108))
    bad = 107
    scores: dict[int, list[float]] = {uid: [] for uid in labelers}
    for _task in range(60):
        truth = rng.sample(ids, len(ids))
        judges = rng.sample(labelers, 3)
        rankings = {uid: random_ranking(ids, rng) if uid == bad else noisy_copy(truth, rng) for uid in judges}
        for uid, ranking in rankings.items():  # against the consensus of the other two
            others = [r for other, r in rankings.items() if other != uid]
            tau = tau_b(ranking, consensus(others).ranks)
            if tau is not None:  # the others may cancel out into one big tie
                scores[uid].append(tau)
    agreement = {uid: sum(v) / len(v) for uid, v in scores.items()}
    compared = {uid: len(v) for uid, v in scores.items()}
    marked = outliers(agreement, compared)
    assert set(marked) == {bad}
    assert marked[bad] < OUTLIER_Z
    assert all(agreement[uid] > 0.5 for uid in labelers if uid != bad) and abs(agreement[bad]) < 0.3


def test_no_outlier_among_equals_or_too_few():
    assert outliers({1: 0.71, 2: 0.70, 3: 0.69, 4: 0.7}, {1: 9, 2: 9, 3: 9, 4: 9}) == {}
    assert outliers({1: 0.9, 2: 0.9, 3: -0.5}, {1: 9, 2: 9, 3: 4}) == {}  # too few judgments
    assert robust_z({1: 0.9, 2: 0.1}) == {}  # two labelers: no "rest" to compare with


def test_leaderboard_ranks_the_planted_better_version_first_with_intervals():
    rng = random.Random(2)
    outcomes = []
    for _task in range(150):
        # Version 7 beats 5 in 75% of pairs, 5 and 3 are even, ties now and then.
        task = []
        for a, b, p in ((7, 5, 0.75), (5, 3, 0.5), (7, 3, 0.75)):
            roll = rng.random()
            task.append((a, b, 0.5 if roll < 0.1 else float(rng.random() < p)))
        outcomes.append(task)
    board = version_ratings(outcomes, resamples=200, seed=0)
    assert [r.version_id for r in board][0] == 7
    by_id = {r.version_id: r for r in board}
    assert by_id[7].low > max(by_id[5].high, by_id[3].high)  # clearly better
    assert by_id[5].low < by_id[3].high and by_id[3].low < by_id[5].high  # indistinguishable
    for r in board:
        assert r.low < r.score < r.high and r.pairs == 300
    assert by_id[7].win_rate == pytest.approx(0.73, abs=0.06)
    assert by_id[7].rating == pytest.approx(1000 + 400 / 2.302585093 * by_id[7].score)
    assert version_ratings(outcomes, resamples=200, seed=0) == board  # fixed seed: same intervals
    assert version_ratings([[(1, 1, 0.5)]]) == []  # one version: nothing to rank
