"""Krippendorff's alpha (nominal, ordinal, interval) from the coincidence matrix, in numpy."""

from collections.abc import Sequence
from enum import StrEnum

import numpy as np


class Level(StrEnum):
    nominal = "nominal"
    ordinal = "ordinal"
    interval = "interval"


def _distances(values: np.ndarray, totals: np.ndarray, level: Level) -> np.ndarray:
    """delta^2 between every two values; ordinal uses the values' marginal totals (Krippendorff 2011)."""
    if level == Level.nominal:
        return 1.0 - np.eye(len(values))
    if level == Level.interval:
        return (values[:, None] - values[None, :]) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(totals)])
    low = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
    high = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
    between = cumulative[high + 1] - cumulative[low]
    return (between - (totals[low] + totals[high]) / 2) ** 2


def krippendorff_alpha(units: Sequence[Sequence[float]], level: Level | str) -> float | None:
    """Alpha over units, each the values its coders gave (missing labels are simply absent).
    Units with fewer than 2 values carry no information; None when nothing can be paired or
    every pairable value is the same (no expected disagreement)."""
    level = Level(level)
    pairable = [np.asarray(u, dtype=float) for u in units if len(u) >= 2]
    if not pairable:
        return None
    values = np.unique(np.concatenate(pairable))
    if len(values) < 2:
        return None
    counts = np.zeros((len(pairable), len(values)))
    for row, unit in zip(counts, pairable, strict=True):
        np.add.at(row, np.searchsorted(values, unit), 1)
    weights = 1.0 / (counts.sum(axis=1) - 1)
    coincidences = (counts * weights[:, None]).T @ counts - np.diag((counts * weights[:, None]).sum(axis=0))
    totals = coincidences.sum(axis=1)
    delta = _distances(values, totals, level)
    observed = (coincidences * delta).sum()
    expected = (np.outer(totals, totals) * delta).sum()
    if expected == 0:
        return None
    return float(1.0 - (totals.sum() - 1) * observed / expected)
