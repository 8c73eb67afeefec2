"""Statistics of a benchmark: IQM, strict win/tie/loss counts, stratified bootstrap confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``)."""
    values = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    n = values.shape[axis]
    cut = int(0.25 * n)
    kept = np.take(values, np.arange(cut, n - cut), axis=axis)
    return np.asarray(kept.mean(axis=axis))


def win_scores(policy: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """1 where the policy's final objective is strictly lower, 0.5 on ties, 0 otherwise."""
    policy, baseline = np.asarray(policy, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if policy.shape != baseline.shape:
        raise ValueError(f"expected equal shapes, got {policy.shape} and {baseline.shape}")
    return np.where(policy < baseline, 1.0, np.where(policy == baseline, 0.5, 0.0))


def win_rate(policy: np.ndarray, baseline: np.ndarray) -> float:
    """Fraction of (task, seed) pairs where the policy ends lower (ties count half)."""
    return float(win_scores(policy, baseline).mean())


def bootstrap_ci(
    table: np.ndarray,
    statistic: Any = iqm,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over a [tasks, seeds] table.

    Two-level (stratified) resampling: draw tasks with replacement, then
    seeds with replacement within each drawn task; ``statistic(samples,
    axis=-1)`` is applied to each resample's flattened values.

    Args:
        table: [n_tasks, n_seeds] values (e.g. ratios to the oracle).
        statistic: A numpy reduction taking ``axis`` (`iqm`, ``np.median``, ``np.mean``).
        n_boot: Number of resamples.
        seed: Seed of the numpy generator (results are reproducible).
        confidence: Coverage of the interval.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.size == 0:
        raise ValueError(f"expected a non-empty [tasks, seeds] table, got shape {table.shape}")
    if not 0 < confidence < 1 or n_boot < 1:
        raise ValueError(
            f"expected 0 < confidence < 1 and n_boot >= 1, got {confidence=}, {n_boot=}"
        )
    rng = np.random.default_rng(seed)
    n_tasks, n_seeds = table.shape
    task_idx = rng.integers(0, n_tasks, size=(n_boot, n_tasks))
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_tasks, n_seeds))
    samples = table[task_idx[..., None], seed_idx].reshape(n_boot, -1)
    stats = np.asarray(statistic(samples, axis=-1), dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))




