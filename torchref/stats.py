"""Two-sample statistics for convergence parity: is metric A (one framework's seeds) the same as
metric B (the other's)? Welch's t and Mann-Whitney for a difference, Hedges' g for its size, two
one-sided tests (TOST) for equivalence within a margin in pooled standard deviations, and Holm's
correction across tasks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats
from jaxfit.errors import UserError


@dataclass(frozen=True)
class Comparison:
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    diff: float  # mean_a - mean_b
    pooled_sd: float
    hedges_g: float  # diff / pooled_sd, small-sample corrected
    welch_p: float  # two-sided p of a difference
    mannwhitney_p: float
    margin: float  # equivalence margin in the metric's units (margin_sd * pooled_sd)
    tost_p: float  # p of the equivalence test: small = equivalent within the margin

    def as_dict(self) -> dict:
        return asdict(self)


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = len(a), len(b)
    return math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))


def hedges_g(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    s = pooled_sd(a, b)
    d = (a.mean() - b.mean()) / s if s > 0 else (0.0 if a.mean() == b.mean() else math.copysign(math.inf, a.mean() - b.mean()))
    n = len(a) + len(b)
    return d * (1 - 3 / (4 * n - 9))


def tost(a, b, margin: float) -> float:
    """Two one-sided Welch tests of |mean_a - mean_b| < margin; returns the larger one-sided p."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    if se == 0:
        return 0.0 if abs(diff) < margin else 1.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    p_lower = stats.t.sf((diff + margin) / se, df)  # H0: diff <= -margin
    p_upper = stats.t.cdf((diff - margin) / se, df)  # H0: diff >= +margin
    return float(max(p_lower, p_upper))


def compare(a, b, margin_sd: float = 0.75) -> Comparison:
    """Compare samples a and b (one value per seed). The equivalence margin is `margin_sd` pooled
    standard deviations (docs/parity.md: 0.75 caught flax's default init and a 20%-off learning rate)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or len(b) < 3:
        raise UserError(f"compare: need at least 3 values a side, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise UserError("compare: non-finite values (a diverged run?) cannot be compared; filter them first")
    s = pooled_sd(a, b)
    margin = margin_sd * s
    welch = stats.ttest_ind(a, b, equal_var=False)
    try:
        mw = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    except ValueError:  # all values identical
        mw = 1.0
    return Comparison(len(a), len(b), float(a.mean()), float(b.mean()), float(a.std(ddof=1)), float(b.std(ddof=1)),
                      float(a.mean() - b.mean()), s, hedges_g(a, b),
                      float(welch.pvalue) if np.isfinite(welch.pvalue) else 1.0, float(mw), margin, tost(a, b, margin))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj
