"""Honest statistics over tasks and seeds: mean, interquartile mean, and a 95% stratified
bootstrap confidence interval (Agarwal et al. 2021), computed with SciPy's bootstrap.

Scores come as a list of 1-D arrays, one per seed (stratum), each holding per-task scores.
The stratified bootstrap resamples tasks within each seed independently — exactly what
``scipy.stats.bootstrap`` does when given one sample per stratum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def iqm(x, axis=-1):
    """Interquartile mean: the mean of the middle 50% of the values."""
    return stats.trim_mean(x, 0.25, axis=axis)


def _pooled(statistic):
    def f(*samples, axis=-1):
        return statistic(np.concatenate(samples, axis=axis), axis=axis)

    return f


def summarize(per_seed: Sequence[np.ndarray], *, confidence: float = 0.95,
              resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean, IQM and a stratified-bootstrap CI of the IQM over ``per_seed`` task scores."""
    samples = [np.asarray(s, np.float64).ravel() for s in per_seed]
    pooled = np.concatenate(samples)
    out = {"mean": float(pooled.mean()), "iqm": float(iqm(pooled)), "n": int(pooled.size)}
    if pooled.size < 2 or np.ptp(pooled) == 0:
        out["ci_low"] = out["ci_high"] = out["iqm"]
        return out
    res = stats.bootstrap(
        [s for s in samples if s.size], _pooled(iqm), n_resamples=resamples,
        confidence_level=confidence, method="percentile", vectorized=True,
        rng=np.random.default_rng(seed),
    )
    out["ci_low"], out["ci_high"] = float(res.confidence_interval.low), float(
        res.confidence_interval.high)
    return out
