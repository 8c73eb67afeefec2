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


def strict_wins(policy: np.ndarray, baseline: np.ndarray, rtol: float | None = None) -> np.ndarray:
    """1.0 where the policy's final objective is strictly lower (beyond `TIE_RTOL`), else 0.0.

    A tie is not half a win: ties and losses both score 0 here, and
    `strict_win_tie_loss` reports the three counts apart.
    """
    policy, baseline = np.asarray(policy, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if policy.shape != baseline.shape:
        raise ValueError(f"expected equal shapes, got {policy.shape} and {baseline.shape}")
    tie = tie_mask(policy, baseline, TIE_RTOL if rtol is None else rtol)
    return np.where(~tie & (policy < baseline), 1.0, 0.0)


def tie_mask(policy: np.ndarray, baseline: np.ndarray, rtol: float) -> np.ndarray:
    """Where two final objectives tie: ``|p - b| <= rtol * max(|p|, |b|)`` (the one definition)."""
    return np.abs(policy - baseline) <= rtol * np.maximum(np.abs(policy), np.abs(baseline))


def bootstrap_ci(
    table: np.ndarray,
    statistic: Any = iqm,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    resample_tasks: bool = True,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over a [tasks, seeds] table.

    Seeds are resampled with replacement within each task; with
    ``resample_tasks`` the tasks are drawn with replacement first (two-level:
    the held-out benchmark), without it the task set is fixed and each task keeps
    its seed count (rliable's ``StratifiedBootstrap``: the transfer suite).
    ``statistic(samples, axis=-1)`` is applied to each resample's flattened values.

    Args:
        table: [n_tasks, n_seeds] values (e.g. ratios to the oracle).
        statistic: A numpy reduction taking ``axis`` (`iqm`, ``np.median``, ``np.mean``).
        n_boot: Number of resamples.
        seed: Seed of the numpy generator (results are reproducible).
        confidence: Coverage of the interval.
        resample_tasks: Also resample the tasks (see above).
    """
    from hpo_env.errors import ConfigError

    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.size == 0:
        raise ConfigError(f"expected a non-empty [tasks, seeds] table, got shape {table.shape}")
    if not 0 < confidence < 1 or n_boot < 1:
        raise ConfigError(
            f"expected 0 < confidence < 1 and n_boot >= 1, got {confidence=}, {n_boot=}"
        )
    rng = np.random.default_rng(seed)
    n_tasks, n_seeds = table.shape
    if resample_tasks:
        task_idx = rng.integers(0, n_tasks, size=(n_boot, n_tasks))[..., None]
    else:
        task_idx = np.arange(n_tasks)[None, :, None]
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_tasks, n_seeds))
    samples = table[task_idx, seed_idx].reshape(n_boot, -1)
    stats = np.asarray(statistic(samples, axis=-1), dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def within_factor(finals: np.ndarray, oracle: np.ndarray, factor: float) -> np.ndarray:
    """Robustness: where a run's final objective is within ``factor`` times the oracle's
    on the same (task, seed) (``finals <= factor * oracle``, elementwise)."""
    return np.asarray(finals) <= factor * np.asarray(oracle)


def robustness(finals: np.ndarray, oracle: np.ndarray, factor: float) -> float:
    """The fraction of runs `within_factor` of the oracle."""
    return float(np.mean(within_factor(finals, oracle, factor)))


TIE_RTOL = 1e-9
"""Two final objectives tie when they differ by at most this relative amount."""


def _paired(policy: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from hpo_env.errors import ConfigError

    policy, baseline = np.asarray(policy, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if policy.shape != baseline.shape or policy.size == 0:
        raise ConfigError(
            f"expected two non-empty arrays of equal shape (one value per task and seed), "
            f"got {policy.shape} and {baseline.shape}"
        )
    if not (np.isfinite(policy).all() and np.isfinite(baseline).all()):
        raise ConfigError(
            "expected finite objectives; map a diverged run to a finite penalty first "
            "(the transfer loop uses first_val * 100)"
        )
    return policy, baseline


def strict_win_tie_loss(
    policy: np.ndarray, baseline: np.ndarray, rtol: float = TIE_RTOL
) -> dict[str, int]:
    """Counts of pairs the policy wins (strictly lower), ties, and loses.

    A tie is ``|p - b| <= rtol * max(|p|, |b|)`` and is *not* half a win: the
    three counts are reported apart (unlike `win_scores`).

    Example:
        >>> strict_win_tie_loss(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0]))
        {'wins': 1, 'ties': 1, 'losses': 1, 'n': 3}
    """
    policy, baseline = _paired(policy, baseline)
    tie = tie_mask(policy, baseline, rtol)
    wins = int(np.sum(~tie & (policy < baseline)))
    ties = int(np.sum(tie))
    return {
        "wins": wins,
        "ties": ties,
        "losses": int(policy.size) - wins - ties,
        "n": int(policy.size),
    }


def meets(value: float, threshold: float, comparison: str) -> bool:
    """Whether a measured ``value`` meets a target ``comparison`` (``">="`` or ``"<="``) ``threshold``."""
    if comparison not in (">=", "<="):
        raise ValueError(f"comparison must be '>=' or '<=', got {comparison!r}")
    return value >= threshold if comparison == ">=" else value <= threshold


def ratio_summary(
    policy: np.ndarray, baseline: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Strict win/tie/loss counts and the IQM of ``policy / baseline`` with a
    stratified bootstrap 95% CI, over [tasks, seeds] tables of final objectives."""
    policy, baseline = _paired(policy, baseline)
    if policy.ndim != 2:
        raise ValueError(f"expected [tasks, seeds] tables, got shape {policy.shape}")
    ratios = policy / baseline
    counts = strict_win_tie_loss(policy, baseline)
    return {
        **counts,
        "win_rate": counts["wins"] / counts["n"],
        "iqm_ratio": float(iqm(ratios.ravel())),
        "iqm_ratio_ci": list(
            bootstrap_ci(ratios, iqm, n_boot=n_boot, seed=seed, resample_tasks=False)
        ),
        "median_ratio": float(np.median(ratios)),
    }
