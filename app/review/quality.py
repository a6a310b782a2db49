"""Labeler quality and model leaderboards: pure functions, no database."""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import log
from statistics import median, pstdev

import numpy as np

from app.review.metrics import Ranking, bradley_terry

OUTLIER_Z = -2.5          # robust z-score below which a labeler is marked
OUTLIER_MIN_JUDGMENTS = 5  # compared judgments a labeler needs before being marked
OUTLIER_MIN_LABELERS = 3   # a median of fewer labelers says nothing about "the rest"
# MAD floor: when the labelers agree almost exactly, a tiny gap must not read as an outlier.
OUTLIER_SCALE_FLOOR = 0.05
ELO_SCALE = 400 / log(10)  # log-strength to the familiar Elo/Chatbot Arena scale
ELO_BASE = 1000.0


def _side(r: Ranking, x: int, y: int) -> int:
    return (r[x] < r[y]) - (r[x] > r[y])


def first_shown_top(ranks: Ranking, display_order: Sequence[int]) -> float:
    """Credit the first-shown completion gets for rank 1: 1, or 1/t when t completions share rank 1."""
    if not display_order or display_order[0] not in ranks:
        return 0.0
    top = [c for c, r in ranks.items() if r == min(ranks.values())]
    return 1 / len(top) if display_order[0] in top else 0.0


def gold_accuracy(ranks: Ranking, gold: Ranking) -> float | None:
    """Share of completion pairs the labeler put on the gold side (better, worse or tied)."""
    pairs = [(x, y) for x, y in combinations(sorted(gold.keys() & ranks.keys()), 2)]
    if not pairs:
        return None
    return sum(_side(ranks, x, y) == _side(gold, x, y) for x, y in pairs) / len(pairs)


def likert_spread(ratings_per_completion: Sequence[Sequence[int]]) -> float | None:
    """Mean over completions (rated by 2 or more labelers) of the ratings' standard deviation."""
    spreads = [pstdev(values) for values in ratings_per_completion if len(values) >= 2]
    return sum(spreads) / len(spreads) if spreads else None


def robust_z(values: dict[int, float]) -> dict[int, float]:
    """(value - median) / (1.4826 MAD), the scale floored at OUTLIER_SCALE_FLOOR; {} for fewer
    than OUTLIER_MIN_LABELERS values."""
    if len(values) < OUTLIER_MIN_LABELERS:
        return {}
    middle = median(values.values())
    scale = max(1.4826 * median(abs(v - middle) for v in values.values()), OUTLIER_SCALE_FLOOR)
    return {key: (v - middle) / scale for key, v in values.items()}


def eligible_z(agreement: dict[int, float], compared: dict[int, int]) -> dict[int, float]:
    """Robust z-scores of agreement among labelers with at least OUTLIER_MIN_JUDGMENTS compared judgments."""
    return robust_z({uid: a for uid, a in agreement.items() if compared.get(uid, 0) >= OUTLIER_MIN_JUDGMENTS})


def outliers(agreement: dict[int, float], compared: dict[int, int]) -> dict[int, float]:
    """Labelers far below the rest: robust z-score of their agreement under OUTLIER_Z (see
    eligible_z). Returns their z-scores."""
    return {uid: z for uid, z in eligible_z(agreement, compared).items() if z < OUTLIER_Z}


@dataclass(frozen=True)
class VersionRating:
    version_id: int
    score: float     # Bradley-Terry log-strength, centred over the versions
    low: float       # 95% bootstrap interval of the score (tasks resampled)
    high: float
    rating: float    # the score on the Elo scale (1000 + 400 / ln 10 x score)
    pairs: int       # comparisons against other versions
    win_rate: float  # share of those won (a tie is half)


def version_ratings(outcomes: Sequence[Sequence[tuple[int, int, float]]], *, resamples: int = 200,
                    seed: int = 0) -> list[VersionRating]:
    """Bradley-Terry ratings of model versions from per-task outcomes (version a, version b, a's
    score: 1 win, 0.5 tie, 0 loss), with percentile intervals from resampling whole tasks."""
    versions = sorted({v for task in outcomes for a, b, _ in task for v in (a, b)})
    if len(versions) < 2:
        return []
    index = {v: i for i, v in enumerate(versions)}
    per_task = np.zeros((len(outcomes), len(versions), len(versions)))
    for t, task in enumerate(outcomes):
        for a, b, score in task:
            per_task[t, index[a], index[b]] += score
            per_task[t, index[b], index[a]] += 1 - score
    wins = per_task.sum(axis=0)
    scores = bradley_terry(wins)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(outcomes), size=(resamples, len(outcomes)))
    counts = np.stack([np.bincount(row, minlength=len(outcomes)) for row in draws])
    boot = bradley_terry((counts @ per_task.reshape(len(outcomes), -1)).reshape(resamples, *wins.shape))
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    games = wins + wins.T
    return sorted((VersionRating(version_id=v, score=float(scores[i]), low=float(low[i]), high=float(high[i]),
                                 rating=ELO_BASE + ELO_SCALE * float(scores[i]), pairs=int(games[i].sum()),
                                 win_rate=float(wins[i].sum() / games[i].sum()))
                   for v, i in index.items()), key=lambda r: -r.score)
