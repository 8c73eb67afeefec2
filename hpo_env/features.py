"""Statistics history -> fixed-size, bounded, scale-free float32 observation.

The same `FeatureExtractor` runs inside the environment (B runs at once) and
at deploy time on one user run (B=1). It takes no task-specific input: only
`StepStats` and the hyperparameter space. Every feature is a ratio, a log
ratio, a cosine or a fraction, passed through ``symlog`` where it is
unbounded, so tasks with different loss scales look alike, and every
non-finite input becomes 0 so the observation is always finite.

Each run feature is defined once, in `_fold_interval`, over a small set of
primitives (`hpo_env.feature_ops`): on NumPy float32 arrays [B] in the
environment, on NumPy float32 scalars for one run (deploy), and on tensors [B]
as the reference (and on NumPy < 2). ~150 tiny tensor ops per decision would
cost more than the arithmetic; all three round as torch's float32 does and take
their logarithms from torch's kernels, so they give bit-identical observations
(tested).

Bump `FEATURE_SPEC_VERSION` whenever a feature's definition changes: bundles
record it, and loading a bundle made for another version is refused.

Two versions are computed (`FEATURE_SPEC_VERSIONS`); an extractor is built for
one, and a bundle records which (``feature_spec_version``):

- 2 (`FEATURE_SPEC_VERSION`, an extractor's default; bundles before 2026-12-07): as
  above, with each hyperparameter's absolute ``position`` inside its bounds;
- 3 (`RUN_RELATIVE_SPEC_VERSION`, the shipped bundle's since 2026-12-07, chosen by the
  ablation in the README): the run, not the number. No absolute
  hyperparameter feature: each hyperparameter is seen only relative to the
  user's start (``log_change``) and to the previous decision (``last_change``).
  And invariant to the control interval K (the same run observed every K or every
  2K updates gives nearly the same features): the slopes' moving averages decay
  by progress, not by decision (a weight of `_EMA` per `_EMA_PROGRESS` of the
  budget), and ``train_noise`` removes the spread a trend within the interval adds
  (which grows with K). Slopes are per unit of progress and ``log_update_ratio``
  per update, as in version 2.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from hpo_env.errors import ConfigError
from hpo_env.feature_ops import SCALAR_PATH, ArrayOps, ScalarOps, TensorOps, _finite
from hpo_env.space import HyperparameterSpace, HyperparameterSpec, Real
from hpo_env.stats import RunInterval, StepStats

FEATURE_SPEC_VERSION = 2
"""The default feature version (the shipped bundle's)."""
RUN_RELATIVE_SPEC_VERSION = 3
"""Opt-in run-relative, K-invariant features (see the module docstring)."""
FEATURE_SPEC_VERSIONS = (FEATURE_SPEC_VERSION, RUN_RELATIVE_SPEC_VERSION)
"""Every version this code computes."""
OBS_BOUND = 10.0
"""Every feature lies in [-OBS_BOUND, OBS_BOUND]."""

RUN_FEATURES = (
    "progress",  # fraction of the update budget used
    "log_train_ratio",  # log(train loss / the run's first loss)
    "train_slope",  # symlog of d log(train loss) / d progress over the last interval
    "train_slope_ema",  # its exponential moving average
    "train_noise",  # log1p(std / mean) of the losses within the interval
    "val_fresh",  # 1 if a validation loss arrived in this interval
    "val_seen",  # 1 once any validation loss has arrived
    "log_val_ratio",  # log(last validation loss / first validation loss)
    "val_slope_ema",  # symlog of d log(val) / d progress, averaged over arrivals
    "val_above_best",  # log(last validation loss / best so far), >= 0 when overfitting
    "generalization_gap",  # symlog log(last validation loss / train loss)
    "val_staleness",  # progress since the last validation loss (1 if none yet)
    "log_grad_norm_ratio",  # log10(grad norm / first grad norm)
    "grad_cosine",  # cosine between successive interval-final gradients
    "log_update_ratio",  # (log10(per-update ||Δθ||/||θ||) + 3) / 2
    "train_above_best",  # log(interval train loss / lowest interval train loss so far), >= 0
    "val_since_best",  # progress since the best validation loss arrived (0 if the last is best)
)
HPARAM_FEATURES = (
    "position",  # log10 value inside the bounds, mapped to [-1, 1]
    "log_change",  # log10(value / value at the episode's start)
    "present",  # 1 if the run uses this hyperparameter
    "last_change",  # log10(value / value at the previous decision): the last action's effect
)
HPARAM_FEATURES_RUN_RELATIVE = ("log_change", "present", "last_change")
"""Version 3's hyperparameter features: no absolute ``position``."""
_EMA = 0.3
_EMA_PROGRESS = 0.02
"""Version 3: the moving averages weigh a new value by `_EMA` per this much progress
(one decision of a 50-decision run, the deployed default), whatever K is."""
_EPS = 1e-12


def check_feature_version(version: int) -> int:
    """``version`` if this code computes it, else a `ConfigError` naming the known ones."""
    if isinstance(version, bool) or version not in FEATURE_SPEC_VERSIONS:
        raise ConfigError(
            f"feature_spec_version must be one of {list(FEATURE_SPEC_VERSIONS)} "
            f"(2: default, 3: run-relative), got {version!r}"
        )
    return int(version)


def hparam_features(version: int = FEATURE_SPEC_VERSION) -> tuple[str, ...]:
    """The per-hyperparameter feature names of ``version``."""
    check_feature_version(version)
    return HPARAM_FEATURES if version == FEATURE_SPEC_VERSION else HPARAM_FEATURES_RUN_RELATIVE


_TENSOR_OPS = TensorOps()
_ARRAY_OPS = ArrayOps()


@dataclasses.dataclass
class _IntervalInputs:
    """One interval's `StepStats` fields: tensors [B], or float32 scalars for one run."""

    train: Any
    train_std: Any
    train_first: Any
    grad_norm: Any
    grad_cosine: Any
    update_ratio: Any
    n_updates: int
    val: Any
    progress: Any


def _fold_interval(
    xp: Any, s: dict[str, Any], x: _IntervalInputs, version: int = FEATURE_SPEC_VERSION
) -> dict[str, Any]:
    """The run features' one definition: folds an interval into the state ``s`` (in
    place) and returns the features by name. ``xp`` is `_ARRAY_OPS` (values are
    float32 arrays [B]), `_TENSOR_OPS` (tensors [B]) or a `ScalarOps` (float32
    scalars of one run); ``+ - * /`` and comparisons are the values' own, with
    torch's float32 rounding in all three. ``version`` 3 (run-relative) decays the
    moving averages by progress and detrends ``train_noise``."""
    progress = xp.finite(xp.clamp(x.progress, 0.0, 1.0))
    ema = _EMA
    if version != FEATURE_SPEC_VERSION:
        # 1 - (1 - _EMA) ** (d_progress / _EMA_PROGRESS): per unit of progress, not per decision.
        step = xp.clamp(progress - xp.finite(s["prev_progress"]), 0.0, 1.0)
        ema = 1.0 - xp.exp(step * (math.log(1.0 - _EMA) / _EMA_PROGRESS))
    train = x.train
    s["ref_loss"] = xp.where(xp.isnan(s["ref_loss"]), x.train_first, s["ref_loss"])
    s["ref_grad"] = xp.where(xp.isnan(s["ref_grad"]), x.grad_norm, s["ref_grad"])
    log_train = xp.safe_log(train)
    log_ref_loss = xp.safe_log(s["ref_loss"])
    prev_log_train = xp.where(xp.isnan(s["prev_train"]), log_ref_loss, xp.safe_log(s["prev_train"]))
    d_progress = xp.clamp_min(progress - s["prev_progress"], 1e-3)
    train_slope = xp.finite(xp.symlog((log_train - prev_log_train) / d_progress))
    s["train_slope_ema"] = xp.where(
        xp.isnan(s["train_slope_ema"]),
        train_slope,
        (1 - ema) * s["train_slope_ema"] + ema * train_slope,
    )

    val = x.val
    fresh = xp.isfinite(val) & (val > 0)
    first_val_seen = fresh & xp.isnan(s["first_val"])
    s["first_val"] = xp.where(first_val_seen, val, s["first_val"])
    val_ema = _EMA
    if version != FEATURE_SPEC_VERSION:  # by the progress since the last arrival
        since = xp.clamp(progress - xp.finite(s["last_val_progress"]), 0.0, 1.0)
        val_ema = 1.0 - xp.exp(since * (math.log(1.0 - _EMA) / _EMA_PROGRESS))
    d_val_progress = xp.clamp_min(progress - s["last_val_progress"], 1e-3)
    val_slope = xp.finite(
        xp.symlog((xp.safe_log(val) - xp.safe_log(s["last_val"])) / d_val_progress)
    )
    has_prev_val = fresh & xp.isfinite(s["last_val"])
    new_val_ema = xp.where(
        xp.isnan(s["val_slope_ema"]),
        val_slope,
        (1 - val_ema) * s["val_slope_ema"] + val_ema * val_slope,
    )
    s["val_slope_ema"] = xp.where(has_prev_val, new_val_ema, s["val_slope_ema"])
    new_best = fresh & ~(val >= s["best_val"])  # NaN best (none yet) counts as beaten
    s["best_val"] = xp.where(fresh, xp.fmin(s["best_val"], val), s["best_val"])
    s["best_val_progress"] = xp.where(new_best, progress, s["best_val_progress"])
    finite_train = xp.isfinite(train) & (train > 0)
    s["best_train"] = xp.where(finite_train, xp.fmin(s["best_train"], train), s["best_train"])
    s["last_val"] = xp.where(fresh, val, s["last_val"])
    s["last_val_progress"] = xp.where(fresh, progress, s["last_val_progress"])
    seen = xp.isfinite(s["last_val"])
    log_last_val = xp.safe_log(s["last_val"])

    per_update_ratio = x.update_ratio / max(x.n_updates, 1)
    train_std = x.train_std
    if version != FEATURE_SPEC_VERSION and x.n_updates > 1:
        # A linear trend over K losses whose mean is ``d`` above the first adds a variance
        # of d**2 (K + 1) / (3 (K - 1)); what remains is the noise around the trend.
        k = x.n_updates
        trend = x.train - x.train_first
        noise_var = xp.clamp_min(
            x.train_std * x.train_std - trend * trend * ((k + 1) / (3.0 * (k - 1))), 0.0
        )
        train_std = xp.exp(0.5 * xp.safe_log(noise_var))
        train_std = xp.where(noise_var > 0, train_std, 0.0 * x.train_std)
    features = {
        "progress": progress,
        "log_train_ratio": log_train - log_ref_loss,
        "train_slope": train_slope,
        "train_slope_ema": s["train_slope_ema"],
        "train_noise": xp.log1p(train_std / (abs(train) + _EPS)),
        "val_fresh": xp.as_float(fresh),
        "val_seen": xp.as_float(seen),
        "log_val_ratio": log_last_val - xp.safe_log(s["first_val"]),
        "val_slope_ema": s["val_slope_ema"],
        "val_above_best": log_last_val - xp.safe_log(s["best_val"]),
        "generalization_gap": xp.symlog(log_last_val - log_train),
        "val_staleness": xp.where(seen, progress - s["last_val_progress"], 1.0),
        "log_grad_norm_ratio": xp.log10(x.grad_norm + _EPS) - xp.log10(s["ref_grad"] + _EPS),
        "grad_cosine": x.grad_cosine,
        "log_update_ratio": (xp.log10(per_update_ratio + _EPS) + 3.0) / 2.0,
        "train_above_best": log_train - xp.safe_log(s["best_train"]),
        "val_since_best": xp.where(seen, progress - s["best_val_progress"], 0.0),
    }
    s["prev_train"] = xp.where(xp.isfinite(train), train, s["prev_train"])
    s["prev_progress"] = progress
    return features


class FeatureExtractor:
    """Stateful map from a run's `StepStats` history to observations [B, D].

    Example:
        >>> space = HyperparameterSpace.from_names(["learning_rate"])
        >>> fx = FeatureExtractor(space, n_runs=1)
        >>> fx.reset({"learning_rate": torch.tensor([0.1])}).shape
        torch.Size([1, 21])
    """

    STATE_KEYS = (
        "ref_loss",
        "ref_grad",
        "first_val",
        "best_val",
        "last_val",
        "last_val_progress",
        "prev_train",
        "prev_progress",
        "train_slope_ema",
        "val_slope_ema",
        "best_train",
        "best_val_progress",
    )

    def __init__(
        self,
        space: HyperparameterSpace,
        n_runs: int,
        spec_version: int = FEATURE_SPEC_VERSION,
    ) -> None:
        if n_runs < 1:
            raise ValueError(f"n_runs must be >= 1, got {n_runs=}")
        self.space = space
        self.n_runs = n_runs
        self.spec_version = check_feature_version(spec_version)
        self._hparam_features = hparam_features(self.spec_version)
        self._state: dict[str, Tensor] = {k: self._nan() for k in self.STATE_KEYS}
        # One run's state as float32 scalars while `observe_run` folds into it; the
        # tensors in ``_state`` are rebuilt from it only when someone reads `state`.
        self._run_state: dict[str, Any] | None = None
        self._initial: dict[str, Tensor] = {}
        self._previous: dict[str, Tensor] = {}
        # Likewise one run's (initial, previous) hyperparameters as float32 scalars (None:
        # not recorded), the newer copy while set; see `initial_hparams`.
        self._run_hparams: dict[str, list[Any]] | None = None
        self._scalar_ops = ScalarOps()

    @property
    def initial_hparams(self) -> dict[str, Tensor]:
        """Each hyperparameter's value at the episode's start, name -> float32 [B]."""
        self._sync_run_hparams()
        return self._initial

    @property
    def previous_hparams(self) -> dict[str, Tensor]:
        """Each hyperparameter's value at the previous decision, name -> float32 [B]."""
        self._sync_run_hparams()
        return self._previous

    def _sync_run_hparams(self) -> None:
        """Write `observe_run`'s scalar hyperparameters back into the tensors (which a
        reader may then change: the scalars are rebuilt from them when next needed)."""
        if self._run_hparams is None:
            return
        for name, (_, previous) in self._run_hparams.items():
            if previous is not None:
                self._previous[name] = torch.tensor([float(previous)], dtype=torch.float32)
        self._run_hparams = None

    @property
    def state(self) -> dict[str, Tensor]:
        """The runs' folded history, name (`STATE_KEYS`) -> float32 [B]."""
        if self._run_state is not None:
            keys = self.STATE_KEYS
            rows = torch.tensor([float(self._run_state[k]) for k in keys], dtype=torch.float32)
            self._state = dict(zip(keys, rows.reshape(-1, 1).unbind(0)))
            self._run_state = None
        return self._state

    @state.setter
    def state(self, value: dict[str, Tensor]) -> None:
        self._state = value
        self._run_state = None

    @staticmethod
    def feature_names(
        space: HyperparameterSpace, spec_version: int = FEATURE_SPEC_VERSION
    ) -> list[str]:
        names = list(RUN_FEATURES)
        for hp in space.names:
            names += [f"{hp}.{f}" for f in hparam_features(spec_version)]
        return names

    @classmethod
    def observation_size(
        cls, space: HyperparameterSpace, spec_version: int = FEATURE_SPEC_VERSION
    ) -> int:
        return len(cls.feature_names(space, spec_version))

    @classmethod
    def observation_space(
        cls, space: HyperparameterSpace, spec_version: int = FEATURE_SPEC_VERSION
    ) -> gym.spaces.Box:
        n = cls.observation_size(space, spec_version)
        return gym.spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(n,), dtype=np.float32)

    def _nan(self) -> Tensor:
        return torch.full((self.n_runs,), float("nan"))

    def _mask(self, mask: Tensor | None) -> Tensor:
        if mask is None:
            return torch.ones(self.n_runs, dtype=torch.bool)
        return torch.as_tensor(mask, dtype=torch.bool).reshape(self.n_runs)

    def reset(self, hparams: Mapping[str, Tensor | Real], mask: Tensor | None = None) -> Tensor:
        """Start new episodes for the runs in ``mask`` (all by default); ``hparams``
        holds [B] tensors, or one run's float32 scalars.

        Returns the initial observation of every run, [B, D]: before any update
        only the hyperparameters are known, so the first decision (which comes
        before the first update) is made from them.
        """
        m = self._mask(mask)
        for key in self.STATE_KEYS:
            self.state[key] = torch.where(m, self._nan(), self.state[key])
        self.state["prev_progress"] = torch.where(m, 0.0, self.state["prev_progress"])
        for name in self.space.names:
            if name in hparams:
                value = torch.as_tensor(hparams[name], dtype=torch.float32).reshape(-1)
                old = self.initial_hparams.get(name, value)
                self.initial_hparams[name] = torch.where(m, value, old)
                old = self.previous_hparams.get(name, value)
                self.previous_hparams[name] = torch.where(m, value, old)
        progress = torch.where(m, 0.0, self.state["prev_progress"])
        run = torch.zeros(self.n_runs, len(RUN_FEATURES))
        run[:, RUN_FEATURES.index("val_staleness")] = 1.0
        run[:, RUN_FEATURES.index("progress")] = progress
        return self._finish(run, hparams)

    def observe(self, stats: StepStats) -> Tensor:
        """Fold in one interval's statistics; returns observations [B, D]."""
        if stats.n_runs != self.n_runs:
            raise ValueError(f"expected StepStats for {self.n_runs} runs, got {stats.n_runs}")
        if not SCALAR_PATH:
            return self._observe_batched(stats)
        return self._observe_one(stats) if self.n_runs == 1 else self._observe_arrays(stats)

    @staticmethod
    def _inputs(stats: StepStats | RunInterval, convert: Any) -> _IntervalInputs:
        """``stats``'s fields (the same names on `StepStats` and `RunInterval`), each
        passed through ``convert``."""
        # StepStats fills its optional fields with NaN, so these are never None.
        progress, val, first_loss = stats.progress, stats.val_loss, stats.train_loss_first
        assert progress is not None and val is not None and first_loss is not None
        return _IntervalInputs(
            train=convert(stats.train_loss),
            train_std=convert(stats.train_loss_std),
            train_first=convert(first_loss),
            grad_norm=convert(stats.grad_norm),
            grad_cosine=convert(stats.grad_cosine),
            update_ratio=convert(stats.update_ratio),
            n_updates=stats.n_updates,
            val=convert(val),
            progress=convert(progress),
        )

    def _observe_batched(self, stats: StepStats) -> Tensor:
        """`observe` on tensors [B]: the reference the NumPy paths are tested against,
        and the environment's path on NumPy < 2."""
        features = _fold_interval(
            _TENSOR_OPS, self.state, self._inputs(stats, lambda t: t), self.spec_version
        )
        run = torch.stack([features[name] for name in RUN_FEATURES], dim=1)
        return self._finish(run, stats.hparams)

    def _observe_arrays(self, stats: StepStats) -> Tensor:
        """`observe` on NumPy float32 arrays [B] (the environment's path): the same
        `_fold_interval` at about two thirds of the tensor path's cost, bit-identical to
        `_observe_batched` (tests/hpo_env/test_features.py checks it). The arrays share
        memory with the tensors; the fold only rebinds state, never writes into it."""
        state = {key: value.numpy() for key, value in self.state.items()}
        with np.errstate(all="ignore"):
            features = _fold_interval(
                _ARRAY_OPS, state, self._inputs(stats, Tensor.numpy), self.spec_version
            )
            run = np.stack([features[name] for name in RUN_FEATURES], axis=1)
        self.state = {key: torch.from_numpy(value) for key, value in state.items()}
        return self._finish(torch.from_numpy(run), stats.hparams)

    def _observe_one(self, stats: StepStats) -> Tensor:
        """`observe` for one run: `observe_run` on its values."""
        return torch.from_numpy(self.observe_run(stats.run(0)))

    def observe_run(self, run: RunInterval) -> np.ndarray:
        """`observe` for one run (B=1) given as floats; returns observations [1, D].

        The same `_fold_interval` on float32 scalars: ~20x fewer tensor ops than
        the tensor path (the deployed scheduler calls this at every decision), with
        bit-identical observations (tests/hpo_env/test_features.py checks it on
        random and garbage input). NumPy < 2 takes the tensor path (see
        `hpo_env.feature_ops.SCALAR_PATH`).
        """
        if self.n_runs != 1:
            raise ValueError(f"observe_run is for one run; this extractor has {self.n_runs}")
        if not SCALAR_PATH:
            return self._observe_batched(StepStats.from_run(run)).numpy()
        f32 = np.float32
        state = self._run_state
        if state is None:
            keys = self.STATE_KEYS
            values = torch.cat([self._state[k] for k in keys]).tolist()
            state = dict(zip(keys, (f32(v) for v in values)))
        with np.errstate(all="ignore"):
            features = _fold_interval(
                self._scalar_ops, state, self._inputs(run, f32), self.spec_version
            )
            row = [float(features[name]) for name in RUN_FEATURES]
            row += self._hparam_row(run.hparams)
        self._run_state = state
        # `_finish`'s cleaning on floats (float32 values, so exact): non-finite -> 0, clamp.
        low, high, isfinite = -OBS_BOUND, OBS_BOUND, math.isfinite
        row = [(low if v < low else high if v > high else v) if isfinite(v) else 0.0 for v in row]
        return np.array([row], dtype=np.float32)

    def _hparam_row(self, hparams: Mapping[str, float]) -> list[float]:
        """`_finish`'s hyperparameter columns for one run, on float32 scalars."""
        f32, xp = np.float32, self._scalar_ops
        known = self._run_hparams
        if known is None:  # from the tensors, once; kept as scalars between decisions
            pairs = {
                name: (self._initial.get(name), self._previous.get(name))
                for name in self.space.names
            }
            known = {
                name: [None if t is None else f32(t.item()) for t in pair]
                for name, pair in pairs.items()
            }
        row: list[float] = []
        for spec in self.space.specs:
            if spec.name not in hparams:
                row += [0.0] * len(self._hparam_features)
                continue
            value = f32(hparams[spec.name])
            initial, previous = known[spec.name]
            init = value if initial is None else initial
            prev = value if previous is None else previous
            known[spec.name][1] = value
            if self.spec_version == FEATURE_SPEC_VERSION:
                row.append(float(xp.normalized(spec, value)))
            row += [float(xp.change(spec, value, init)), 1.0, float(xp.change(spec, value, prev))]
        self._run_hparams = known
        return row

    def _finish(self, run: Tensor, hparams: Mapping[str, Tensor | Real]) -> Tensor:
        columns = [run]
        for spec in self.space.specs:
            if spec.name in hparams:
                value = torch.as_tensor(hparams[spec.name], dtype=torch.float32).reshape(-1)
                value = value.expand(self.n_runs)
                initial = self.initial_hparams.get(spec.name, value)
                previous = self.previous_hparams.get(spec.name, value)
                change, last = (self._change(spec, value, ref) for ref in (initial, previous))
                self.previous_hparams[spec.name] = value.clone()
                cols = [change, torch.ones(self.n_runs), last]
                if self.spec_version == FEATURE_SPEC_VERSION:
                    cols.insert(0, spec.normalized(value))
            else:
                cols = [torch.zeros(self.n_runs)] * len(self._hparam_features)
            columns.append(torch.stack(cols, dim=1))
        obs = torch.cat(columns, dim=1)
        return _finite(obs).clamp(-OBS_BOUND, OBS_BOUND).to(torch.float32)

    @staticmethod
    def _change(spec: HyperparameterSpec, value: Tensor, reference: Tensor) -> Tensor:
        if spec.log:
            return torch.log10(spec.clip(value)) - torch.log10(spec.clip(reference))
        return (value - reference) / (spec.high - spec.low)

    def state_dict(self) -> dict[str, list[float]]:
        """Plain numbers (NaN kept as NaN) so a scheduler can be checkpointed as JSON."""
        out = {k: v.tolist() for k, v in self.state.items()}
        out.update({f"initial.{k}": v.tolist() for k, v in self.initial_hparams.items()})
        out.update({f"previous.{k}": v.tolist() for k, v in self.previous_hparams.items()})
        return out

    def load_state_dict(self, state: Mapping[str, list[float]]) -> None:
        for key, values in state.items():
            tensor = torch.tensor(values, dtype=torch.float32).reshape(self.n_runs)
            if key.startswith("initial."):
                self.initial_hparams[key.removeprefix("initial.")] = tensor
            elif key.startswith("previous."):
                self.previous_hparams[key.removeprefix("previous.")] = tensor
            elif key in self.STATE_KEYS:
                self.state[key] = tensor
            else:
                raise ValueError(f"unknown FeatureExtractor state key {key!r}")
