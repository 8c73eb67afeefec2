"""The primitives `hpo_env.features` defines its features with: on NumPy float32
arrays [B] (the environment's runs), on NumPy float32 scalars (one deployed run),
and on tensors [B] (the reference, and the environment's path on NumPy < 2).

All three round as torch's float32 does, and all take logarithms from torch's own
kernels, so a feature written once over these primitives gives bit-identical
values on any of them (``tests/hpo_env/test_features.py`` checks it). The NumPy
paths exist for speed: a NumPy operation on a few dozen values costs a fraction
of a torch call's dispatch, and a decision's features are ~150 such operations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hpo_env.space import HyperparameterSpec, torch_f32


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def _finite(x: Tensor, fill: float = 0.0) -> Tensor:
    return torch.nan_to_num(x, nan=fill, posinf=fill, neginf=fill)


def _safe_log(x: Tensor) -> Tensor:
    # log of a positive quantity; zero, negative or non-finite inputs become NaN,
    # which the final cleaning maps to 0 ("no information").
    x = torch.where(torch.isfinite(x) & (x > 0), x, torch.full_like(x, float("nan")))
    return torch.log(x)


SCALAR_PATH = int(np.__version__.split(".")[0]) >= 2
"""One run (deploy) folds on NumPy float32 scalars, B runs (the environment) on
NumPy float32 arrays. NumPy >= 2 only: its promotion (NEP 50: a Python float meets
a float32 as float32) is torch's, so the arithmetic is bit for bit the tensor
path's; older NumPy takes the tensor path."""


class TensorOps:
    """`_fold_interval`'s primitives on tensors [B] (the environment's path)."""

    where = staticmethod(torch.where)
    isnan = staticmethod(torch.isnan)
    isfinite = staticmethod(torch.isfinite)
    fmin = staticmethod(torch.fmin)
    log1p = staticmethod(torch.log1p)
    log10 = staticmethod(torch.log10)
    exp = staticmethod(torch.exp)

    @staticmethod
    def safe_log(x: Tensor) -> Tensor:
        return _safe_log(x)

    @staticmethod
    def symlog(x: Tensor) -> Tensor:
        return symlog(x)

    @staticmethod
    def finite(x: Tensor) -> Tensor:
        return _finite(x)

    @staticmethod
    def clamp(x: Tensor, low: float, high: float) -> Tensor:
        return x.clamp(low, high)

    @staticmethod
    def clamp_min(x: Tensor, low: float) -> Tensor:
        return x.clamp_min(low)

    @staticmethod
    def as_float(mask: Tensor) -> Tensor:
        return mask.float()


_F32 = np.float32
_F32_NAN = np.float32("nan")


def _torch_unary(fn: Any, x: np.ndarray) -> np.ndarray:
    """``fn`` (a torch kernel) on a float32 array, through a shared-memory tensor view."""
    return fn(torch.from_numpy(x)).numpy()


class ArrayOps:
    """The same primitives on NumPy float32 arrays [B] (the environment's path on NumPy
    >= 2, whose promotion keeps a Python float meeting float32 in float32, as torch does).

    Each one reproduces its `TensorOps` twin bit for bit, signed zeros and NaN
    propagation included (``clamp`` keeps ``x`` unless a bound is strictly beyond it,
    as torch's does); logarithms run torch's kernels on the same values.
    """

    where = staticmethod(np.where)
    isnan = staticmethod(np.isnan)
    isfinite = staticmethod(np.isfinite)
    fmin = staticmethod(np.fmin)

    @staticmethod
    def log1p(x: np.ndarray) -> np.ndarray:
        return _torch_unary(torch.log1p, x)

    @staticmethod
    def log10(x: np.ndarray) -> np.ndarray:
        return _torch_unary(torch.log10, x)

    @staticmethod
    def exp(x: np.ndarray) -> np.ndarray:
        return _torch_unary(torch.exp, np.asarray(x, dtype=_F32))

    @staticmethod
    def safe_log(x: np.ndarray) -> np.ndarray:
        return _torch_unary(torch.log, np.where(np.isfinite(x) & (x > 0), x, _F32_NAN))

    @staticmethod
    def symlog(x: np.ndarray) -> np.ndarray:
        # torch.sign's value, +0.0 for zeros and NaN (NumPy's sign keeps -0.0 and NaN).
        sign = (x > 0).astype(_F32) - (x < 0).astype(_F32)
        return sign * _torch_unary(torch.log1p, np.abs(x))

    @staticmethod
    def finite(x: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(x), x, _F32(0.0))

    @staticmethod
    def clamp(x: np.ndarray, low: float, high: float) -> np.ndarray:
        x = np.where(_F32(low) > x, _F32(low), x)
        return np.where(_F32(high) < x, _F32(high), x)

    @staticmethod
    def clamp_min(x: np.ndarray, low: float) -> np.ndarray:
        return np.where(_F32(low) > x, _F32(low), x)

    @staticmethod
    def as_float(mask: np.ndarray) -> np.ndarray:
        return mask.astype(_F32)


class ScalarOps:
    """The same primitives on NumPy float32 scalars and NumPy bools (one run).

    Logarithms go through torch's own kernels (NumPy's or libm's may round
    differently), memoised by value: a run's reference losses, best values and
    previous hyperparameters recur from one interval to the next.
    """

    _MEMO_SIZE = 256

    def __init__(self) -> None:
        self._memo: dict[Any, dict[float, np.float32]] = {
            torch.log: {},
            torch.log10: {},
            torch.log1p: {},
            torch.exp: {},
        }

    def _unary(self, fn: Any, x: np.float32) -> np.float32:
        key = float(x)
        if key != key:  # NaN in, NaN out (and NaN is no dictionary key)
            return np.float32("nan")
        # -0.0 == 0.0 as dictionary keys, but log1p(-0.0) is -0.0: zeros skip the memo.
        memo = self._memo[fn] if key != 0.0 else {}
        cached = memo.get(key)
        if cached is not None:
            return cached
        out = torch_f32(fn, x)
        if len(memo) >= self._MEMO_SIZE:
            memo.clear()
        memo[key] = out
        return out

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> np.float32:
        return np.float32(a if cond else b)

    isnan = staticmethod(math.isnan)  # NumPy's ufuncs cost ~1 us on a scalar, math's 0.1
    isfinite = staticmethod(math.isfinite)
    fmin = staticmethod(np.fmin)

    def log1p(self, x: np.float32) -> np.float32:
        return self._unary(torch.log1p, x)

    def log10(self, x: np.float32) -> np.float32:
        return self._unary(torch.log10, x)

    def exp(self, x: np.float32) -> np.float32:
        return self._unary(torch.exp, np.float32(x))

    def safe_log(self, x: np.float32) -> np.float32:
        if math.isfinite(x) and x > 0:
            return self._unary(torch.log, x)
        return np.float32("nan")

    def symlog(self, x: np.float32) -> np.float32:
        sign = np.float32(1.0 if x > 0 else -1.0 if x < 0 else 0.0)  # torch.sign: NaN -> 0
        return sign * self.log1p(abs(x))

    @staticmethod
    def finite(x: np.float32) -> np.float32:
        return x if math.isfinite(x) else np.float32(0.0)

    @staticmethod
    def clamp(x: np.float32, low: float, high: float) -> np.float32:
        if math.isnan(x):
            return x
        return np.float32(min(max(x, np.float32(low)), np.float32(high)))

    @staticmethod
    def clamp_min(x: np.float32, low: float) -> np.float32:
        if math.isnan(x):
            return x
        return np.float32(max(x, np.float32(low)))

    @staticmethod
    def as_float(mask: Any) -> np.float32:
        return np.float32(1.0 if mask else 0.0)

    # HyperparameterSpec's torch methods, on one float32 scalar.

    @staticmethod
    def clip(spec: HyperparameterSpec, value: np.float32) -> np.float32:
        """`HyperparameterSpec.clip`."""
        return spec.clip_one(value)

    def normalized(self, spec: HyperparameterSpec, value: np.float32) -> np.float32:
        """`HyperparameterSpec.normalized`."""
        value = self.clip(spec, value)
        if spec.log:
            lo, hi = math.log10(spec.low), math.log10(spec.high)
            pos = (self.log10(value) - lo) / (hi - lo)
        else:
            pos = (value - spec.low) / (spec.high - spec.low)
        return self.clamp(2.0 * pos - 1.0, -1.0, 1.0)

    def change(self, spec: HyperparameterSpec, value: np.float32, ref: np.float32) -> np.float32:
        """`FeatureExtractor._change`."""
        if spec.log:
            return self.log10(self.clip(spec, value)) - self.log10(self.clip(spec, ref))
        return (value - ref) / (spec.high - spec.low)
