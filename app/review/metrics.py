"""Agreement and consensus for rankings: pure functions on numpy/scipy, no database.

A ranking maps completion ids to ranks (1 = best; equal ranks are a tie). Rankings may leave
completions out (a missing label); every figure says what it does with them.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import sqrt

import numpy as np

Ranking = dict[int, int]

# Precision of the Gaussian prior on Bradley-Terry log-strengths: a completion that wins every
# comparison would otherwise get an infinite strength. 0.1 is weak: one win puts two strengths
# 2.1 apart (P(win) 0.89), ten wins out of ten 3.9 apart (0.98).
BT_PRIOR = 0.1


@dataclass(frozen=True)
class TaskAgreement:
    n: int                      # judgments used
    kendall_w: float | None     # None when fewer than 2 judgments
    mean_tau_b: float | None
    pair_agreement: float | None  # mean over completion pairs of the majority side's share (ties are a side)


@dataclass(frozen=True)
class Consensus:
    ranks: dict[int, int]       # completion id -> consensus rank, 1 = best, equal scores share a rank
    scores: dict[int, float]    # Bradley-Terry strengths (log scale, centred), ties as half-wins
    strength: float             # mean P(win) of each consensus place over the next: 0.5 undecided .. 1 decisive


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def tau_b(a: Ranking, b: Ranking) -> float | None:
    """Kendall's tau-b over the completions both rankings hold; None when either ties all of them."""
    common = sorted(a.keys() & b.keys())
    concordant_minus_discordant = pairs = tied_a = tied_b = 0
    for x, y in combinations(common, 2):
        sa, sb = _sign(a[x] - a[y]), _sign(b[x] - b[y])
        pairs += 1
        concordant_minus_discordant += sa * sb
        tied_a += sa == 0
        tied_b += sb == 0
    denominator = sqrt((pairs - tied_a) * (pairs - tied_b))
    return concordant_minus_discordant / denominator if denominator else None


def kendall_w(rankings: Sequence[Ranking]) -> float | None:
    """Kendall's W with the tie correction, over the completions every ranking holds (re-ranked
    among themselves, ties as mid-ranks); None for fewer than 2 rankings or completions, or all tied."""
    if len(rankings) < 2:
        return None
    ids = sorted(set.intersection(*(set(r) for r in rankings)))
    m, n = len(rankings), len(ids)
    if n < 2:
        return None
    sums = [0.0] * n
    for r in rankings:  # mid-ranks in plain Python: rankdata per ranking costs more than all the rest
        values = [r[c] for c in ids]
        ordered = sorted(values)
        mid = {v: (ordered.index(v) + n - ordered[::-1].index(v) + 1) / 2 for v in set(values)}
        for i, v in enumerate(values):
            sums[i] += mid[v]
    spread = sum((total - m * (n + 1) / 2) ** 2 for total in sums)
    ties = sum(t ** 3 - t for r in rankings for t in Counter(r[c] for c in ids).values())
    denominator = m * m * (n ** 3 - n) - m * ties
    return 12 * spread / denominator if denominator else None


def pair_agreement(rankings: Sequence[Ranking]) -> float | None:
    """Mean over completion pairs (judged by 2 or more rankings) of the share of rankings on the
    majority side: better, worse or tied. 1 is unanimity; with 3 sides chance is lower than 1/2."""
    ids = sorted(set().union(*rankings)) if rankings else []
    shares = []
    for x, y in combinations(ids, 2):
        sides = [_sign(r[x] - r[y]) for r in rankings if x in r and y in r]
        if len(sides) >= 2:
            shares.append(max(Counter(sides).values()) / len(sides))
    return sum(shares) / len(shares) if shares else None


def task_agreement(rankings: list[dict[int, int]]) -> TaskAgreement:
    """Kendall's W, mean pairwise tau-b and pair agreement of one task's rankings."""
    if len(rankings) < 2:
        return TaskAgreement(n=len(rankings), kendall_w=None, mean_tau_b=None, pair_agreement=None)
    taus = [t for a, b in combinations(rankings, 2) if (t := tau_b(a, b)) is not None]
    return TaskAgreement(n=len(rankings), kendall_w=kendall_w(rankings),
                         mean_tau_b=sum(taus) / len(taus) if taus else None,
                         pair_agreement=pair_agreement(rankings))


def bradley_terry(wins: np.ndarray, prior: float = BT_PRIOR, max_steps: int = 100) -> np.ndarray:
    """Centred log-strengths from win counts `wins[..., i, j]` (i beat j; a tie adds 0.5 to both),
    by Newton's method on the penalised likelihood; leading axes are independent problems."""
    wins = np.asarray(wins, dtype=float)
    n = wins.shape[-1]
    games = wins + np.swapaxes(wins, -1, -2)
    won = wins.sum(axis=-1)
    scores = np.zeros(wins.shape[:-1])
    eye = np.eye(n)
    for _ in range(max_steps):
        p = 1 / (1 + np.exp(scores[..., None, :] - scores[..., :, None]))  # P(i beats j)
        gradient = won - (games * p).sum(axis=-1) - prior * scores
        curvature = games * p * (1 - p)
        hessian = curvature - eye * (curvature.sum(axis=-1)[..., None] + prior)
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        scores = scores - step
        if np.abs(step).max(initial=0.0) < 1e-9:
            break
    return scores - scores.mean(axis=-1, keepdims=True)


def win_matrix(rankings: Sequence[Ranking], ids: Sequence[int]) -> np.ndarray:
    """Pairwise wins among `ids` implied by the rankings (a tie is half a win each way)."""
    index = {cid: i for i, cid in enumerate(ids)}
    wins = np.zeros((len(ids), len(ids)))
    for r in rankings:
        held = [c for c in ids if c in r]
        for x, y in combinations(held, 2):
            i, j = index[x], index[y]
            if r[x] < r[y]:
                wins[i, j] += 1
            elif r[x] > r[y]:
                wins[j, i] += 1
            else:
                wins[i, j] += 0.5
                wins[j, i] += 0.5
    return wins


def dense_ranks(scores: dict[int, float], places: int = 9) -> dict[int, int]:
    """1 for the highest score; scores equal to `places` decimals share a rank (1, 2, 2, 3)."""
    levels = sorted({round(s, places) for s in scores.values()}, reverse=True)
    rank_of = {level: i + 1 for i, level in enumerate(levels)}
    return {cid: rank_of[round(s, places)] for cid, s in scores.items()}


def _consensus_from_scores(ids: Sequence[int], scores: np.ndarray) -> Consensus:
    by_id = {cid: float(s) for cid, s in zip(ids, scores, strict=True)}
    ordered = sorted(by_id.values(), reverse=True)
    steps = [1 / (1 + np.exp(lower - upper)) for upper, lower in zip(ordered, ordered[1:])]
    strength = float(sum(steps) / len(steps)) if steps else 0.5
    return Consensus(ranks=dense_ranks(by_id), scores=by_id, strength=strength)


def consensus(rankings: list[dict[int, int]]) -> Consensus:
    """The Bradley-Terry consensus of one task's rankings (ties as half-wins); no rankings: empty."""
    return consensus_many([rankings])[0]


def consensus_many(problems: Sequence[Sequence[Ranking]]) -> list[Consensus]:
    """consensus() for many tasks at once: problems of the same size are fitted in one batch."""
    ids_of = [sorted(set().union(*rankings)) if rankings else [] for rankings in problems]
    by_size: dict[int, list[int]] = {}
    for i, ids in enumerate(ids_of):
        by_size.setdefault(len(ids), []).append(i)
    results: list[Consensus | None] = [None] * len(problems)
    for size, members in by_size.items():
        if size == 0:
            for i in members:
                results[i] = Consensus(ranks={}, scores={}, strength=0.5)
            continue
        wins = np.stack([win_matrix(problems[i], ids_of[i]) for i in members])
        for i, scores in zip(members, bradley_terry(wins), strict=True):
            results[i] = _consensus_from_scores(ids_of[i], scores)
    return [r for r in results if r is not None]
