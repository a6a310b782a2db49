"""Agreement figures against reference implementations, on data with a known structure."""

import random
from itertools import combinations

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import friedmanchisquare, kendalltau

from app.review.alpha import krippendorff_alpha
from app.review.metrics import (
    consensus, consensus_many, dense_ranks, kendall_w, pair_agreement, task_agreement, tau_b,
)

IDS = [11, 12, 13, 14, 15]


def noisy_copy(truth: list[int], rng: random.Random, swaps: int = 1) -> dict[int, int]:
    """The true order with a few adjacent swaps: a careful labeler."""
    order = list(truth)
    for _ in range(swaps):
        i = rng.randrange(len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    return {cid: place + 1 for place, cid in enumerate(order)}


def random_ranking(ids: list[int], rng: random.Random, ties: bool = False) -> dict[int, int]:
    if ties:  # dense ranks with ties, as the labeling page sends them
        raw = {cid: rng.randint(1, len(ids)) for cid in ids}
        return dense_ranks({cid: -r for cid, r in raw.items()})
    order = rng.sample(ids, len(ids))
    return {cid: place + 1 for place, cid in enumerate(order)}


rankings_with_ties = st.lists(st.integers(1, 5), min_size=5, max_size=5).map(
    lambda ranks: dense_ranks({cid: -r for cid, r in zip(IDS, ranks)}))


@given(rankings_with_ties, rankings_with_ties)
@settings(max_examples=200)
def test_tau_b_matches_scipy(a, b):
    expected = kendalltau([a[c] for c in IDS], [b[c] for c in IDS], variant="b").statistic
    got = tau_b(a, b)
    if np.isnan(expected):
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_tau_b_uses_the_completions_both_rankings_hold():
    a = {11: 1, 12: 2, 13: 3, 14: 4}
    b = {11: 2, 12: 1, 14: 3}  # 13 missing
    expected = kendalltau([1, 2, 4], [2, 1, 3], variant="b").statistic
    assert tau_b(a, b) == pytest.approx(expected) == pytest.approx(1 / 3)
    assert tau_b({11: 1}, {11: 1}) is None
    assert tau_b({11: 1, 12: 1}, {11: 1, 12: 2}) is None  # one side ties everything


def test_kendall_w_hand_worked_with_ties():
    # Mid-ranks A B C D: J1 1 2 3 4; J2 (A=B) 1.5 1.5 3 4; J3 (C=D) 2 1 3.5 3.5.
    # Rank sums 4.5 4.5 9.5 11.5, mean 7.5, S = 9 + 9 + 4 + 16 = 38.
    # Ties: J2 and J3 each one pair, 2^3 - 2 = 6, so sum T = 12.
    # W = 12 S / (m^2 (n^3 - n) - m sum T) = 456 / (9 * 60 - 36) = 456 / 504 = 19 / 21.
    rankings = [{1: 1, 2: 2, 3: 3, 4: 4}, {1: 1, 2: 1, 3: 2, 4: 3}, {1: 2, 2: 1, 3: 3, 4: 3}]
    assert kendall_w(rankings) == pytest.approx(19 / 21)


@given(st.lists(rankings_with_ties, min_size=2, max_size=6))
@settings(max_examples=100)
def test_kendall_w_matches_friedman_with_tie_correction(rankings):
    # Friedman's chi-square (scipy corrects it for ties) is m (n - 1) W.
    columns = [[r[c] for r in rankings] for c in IDS]
    if all(len(set(r.values())) == 1 for r in rankings):
        assert kendall_w(rankings) is None
        return
    chi2 = friedmanchisquare(*columns).statistic
    assert kendall_w(rankings) == pytest.approx(chi2 / (len(rankings) * (len(IDS) - 1)), abs=1e-9)


def test_kendall_w_with_a_missing_label_uses_the_common_completions():
    full = [{1: 1, 2: 2, 3: 3}, {1: 1, 2: 2, 3: 3, 4: 1}]  # the second also ranks 4
    assert kendall_w(full) == pytest.approx(1.0)
    assert kendall_w([{1: 1, 2: 2}, {2: 1, 3: 2}]) is None  # one common completion
    assert kendall_w([{1: 1, 2: 2}]) is None


def test_pair_agreement_hand_worked():
    rankings = [{1: 1, 2: 2, 3: 3}, {1: 1, 2: 2, 3: 3}, {1: 1, 2: 1, 3: 2}]
    # (1,2): better, better, tie -> 2/3. (1,3) and (2,3): better x3 -> 1. Mean 8/9.
    assert pair_agreement(rankings) == pytest.approx(8 / 9)
    # A fourth, {1: 1, 2: 3, 3: 2}: (1,2) 3/4 better; (1,3) 4/4; (2,3) 3 better, 1 worse -> 3/4.
    assert pair_agreement(rankings + [{1: 1, 2: 3, 3: 2}]) == pytest.approx((3 / 4 + 1 + 3 / 4) / 3)
    assert pair_agreement([{1: 1, 2: 2}, {1: 2, 2: 1}]) == pytest.approx(0.5)
    assert pair_agreement([{1: 1, 2: 2}, {3: 1, 4: 2}]) is None  # no pair judged twice


def test_perfect_agreement_is_one_everywhere():
    ranking = {11: 2, 12: 1, 13: 3, 14: 3}
    agreement = task_agreement([ranking] * 4)
    assert (agreement.n, agreement.kendall_w, agreement.mean_tau_b, agreement.pair_agreement) == (4, 1.0, 1.0, 1.0)
    units = [[ranking[c]] * 4 for c in ranking]
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(1.0)


def test_one_judgment_has_no_agreement():
    agreement = task_agreement([{1: 1, 2: 2}])
    assert (agreement.n, agreement.kendall_w, agreement.mean_tau_b, agreement.pair_agreement) == (1, None, None, None)


def test_random_rankings_agree_about_as_chance_says():
    rng = random.Random(7)
    tasks = [[random_ranking(IDS[:4], rng) for _ in range(3)] for _ in range(300)]
    figures = [task_agreement(t) for t in tasks]
    # tau-b of two random orders of 4 has mean 0 and sd 0.49; 900 pairs: se 0.016, so 0.08 is 5 se.
    assert np.mean([f.mean_tau_b for f in figures]) == pytest.approx(0.0, abs=0.08)
    # W of m independent judges has mean 1/m (here 1/3), not 0.
    assert np.mean([f.kendall_w for f in figures]) == pytest.approx(1 / 3, abs=0.03)
    units = [[r[c] for r in t] for t in tasks for c in IDS[:4]]
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.0, abs=0.08)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_alpha_matches_the_krippendorff_package_with_missing_values(level, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 8, size=60).astype(float)
    coders = np.array([np.where(rng.random(60) < 0.7, truth, rng.integers(1, 8, size=60)) for _ in range(5)])
    coders[rng.random(coders.shape) < 0.35] = np.nan  # missing labels
    expected = krippendorff.alpha(reliability_data=coders, level_of_measurement=level)
    units = [[v for v in coders[:, u] if not np.isnan(v)] for u in range(coders.shape[1])]
    assert krippendorff_alpha(units, level) == pytest.approx(expected, abs=1e-10)
    assert 0.2 < expected < 0.95  # the planted structure shows


def test_alpha_without_pairable_values_is_none():
    assert krippendorff_alpha([[1], [2], []], "nominal") is None
    assert krippendorff_alpha([[1, 1], [1, 1]], "interval") is None  # no expected disagreement


def test_consensus_recovers_the_true_order_from_noisy_labelers():
    rng = random.Random(3)
    truth = [13, 11, 15, 12, 14]
    result = consensus([noisy_copy(truth, rng) for _ in range(9)])
    assert [cid for cid, _ in sorted(result.ranks.items(), key=lambda kv: kv[1])] == truth
    assert sum(result.scores.values()) == pytest.approx(0.0, abs=1e-9)
    assert 0.8 < result.strength < 1.0


def test_consensus_ties_share_a_rank_and_split_votes_are_weak():
    tied = consensus([{1: 1, 2: 1, 3: 2}, {1: 1, 2: 1, 3: 2}])
    assert tied.ranks == {1: 1, 2: 1, 3: 2}
    assert tied.scores[1] == pytest.approx(tied.scores[2])
    split = consensus([{1: 1, 2: 2}, {1: 2, 2: 1}])
    assert split.ranks == {1: 1, 2: 1} and split.strength == pytest.approx(0.5)
    unanimous = consensus([{1: 1, 2: 2}] * 3)
    assert unanimous.ranks == {1: 1, 2: 2} and unanimous.strength > 0.9
    assert consensus([]).ranks == {} and consensus([]).strength == 0.5


def test_consensus_with_a_missing_label():
    # Completion 3 is ranked by one labeler only, last: it still comes last.
    result = consensus([{1: 1, 2: 2}, {1: 1, 2: 2, 3: 3}, {1: 1, 2: 2}])
    assert result.ranks == {1: 1, 2: 2, 3: 3}


def test_consensus_many_is_consensus_per_task():
    rng = random.Random(5)
    problems = [[random_ranking(IDS[:k], rng, ties=True) for _ in range(3)] for k in (2, 3, 4, 4, 5)] + [[]]
    for batch, problem in zip(consensus_many(problems), problems, strict=True):
        single = consensus(problem)
        assert batch.ranks == single.ranks
        assert batch.scores == pytest.approx(single.scores)


def test_pairs_of_tau_b_average_in_task_agreement():
    rankings = [{1: 1, 2: 2, 3: 3}, {1: 2, 2: 1, 3: 3}, {1: 3, 2: 2, 3: 1}]
    taus = [kendalltau([a[c] for c in (1, 2, 3)], [b[c] for c in (1, 2, 3)]).statistic
            for a, b in combinations(rankings, 2)]
    assert task_agreement(rankings).mean_tau_b == pytest.approx(np.mean(taus))
