"""Synthetic supervised families: Gaussian-mixture classification, teacher-network
regression, and MAML-style sinusoid regression, each trained by an MLP.

Each run draws its own data (mixture centres, teacher weights, sinusoid
amplitude and phase) from its seed; the task fixes only the structure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from tasks.engine import SupervisedData
from tasks.family import check_split
from tasks.nets import MlpSpec, macs_per_example
from tasks.supervised.base import SupervisedTask
from tasks.supervised.choices import (
    TrainingChoices,
    check_float_range,
    check_int_range,
    log_uniform_int,
)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _mlp_cost(input_dim: int, output_dim: int) -> Callable[[tuple[int, ...]], int]:
    return lambda hidden: macs_per_example(MlpSpec(input_dim, hidden, output_dim))


def _build_task(
    family: str, data: object, input_dim: int, output_dim: int, sampled: dict[str, object]
) -> SupervisedTask:
    net = MlpSpec(
        input_dim,
        sampled.pop("hidden"),  # type: ignore[arg-type]
        output_dim,
        sampled.pop("activation"),  # type: ignore[arg-type]
    )
    return SupervisedTask(family=family, data=data, net=net, **sampled)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Gaussian mixture


@dataclasses.dataclass(frozen=True)
class GaussianMixtureData:
    """Classification of points from a mixture: each class owns ``clusters_per_class``
    Gaussian blobs (unit variance) whose centres each run draws afresh."""

    n_features: int
    n_classes: int
    clusters_per_class: int
    separation: float
    """Typical distance between two centres, in units of the blob standard deviation."""
    label_noise: float
    """Fraction of labels (train and validation) replaced by uniform random classes."""
    n_train: int
    n_val: int = 512
    loss: str = "cross_entropy"

    def describe(self) -> str:
        return (
            f"d={self.n_features},c={self.n_classes},k={self.clusters_per_class},"
            f"sep={self.separation:.2f},flip={self.label_noise:.2f},n={self.n_train}"
        )

    def generate(self, rng: np.random.Generator) -> SupervisedData:
        d, c, k = self.n_features, self.n_classes, self.clusters_per_class
        # Per-dimension std s gives E||c1 - c2|| ~ s * sqrt(2d): scale so that's `separation`.
        centres = rng.normal(size=(c * k, d)) * (self.separation / math.sqrt(2 * d))
        n = self.n_train + self.n_val
        labels = rng.integers(c, size=n)
        blob = labels * k + rng.integers(k, size=n)
        x = centres[blob] + rng.normal(size=(n, d))
        flip = rng.random(n) < self.label_noise
        labels = np.where(flip, rng.integers(c, size=n), labels)
        y = torch.from_numpy(labels.astype(np.int64))
        x_t = _tensor(x)
        return SupervisedData(
            x_t[: self.n_train], y[: self.n_train], x_t[self.n_train :], y[self.n_train :]
        )


@dataclasses.dataclass(frozen=True)
class GaussianMixtureMlpFamily:
    """MLP classifiers on Gaussian-mixture data of varied dimension, classes, noise, size.

    Splits: ``train`` draws ``n_features`` from `train_features` with train activations /
    optimizers; ``heldout`` draws from `heldout_features` (wider inputs) with held-out
    activations and AdamW.
    """

    name: str = "gaussian_mixture_mlp"
    splits: tuple[str, ...] = ("train", "heldout")
    train_features: tuple[int, int] = (2, 32)
    heldout_features: tuple[int, int] = (33, 64)
    n_classes: tuple[int, int] = (2, 10)
    clusters_per_class: tuple[int, int] = (1, 3)
    separation: tuple[float, float] = (2.0, 5.0)
    label_noise: tuple[float, float] = (0.0, 0.15)
    n_train: tuple[int, int] = (256, 2048)
    n_val: int = 512
    choices: TrainingChoices = dataclasses.field(default_factory=TrainingChoices)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("train_features", "heldout_features", "clusters_per_class", "n_train"):
            check_int_range(owner, name, getattr(self, name))
        check_int_range(owner, "n_classes", self.n_classes, minimum=2)
        check_float_range(owner, "separation", self.separation, 0.0)
        check_float_range(owner, "label_noise", self.label_noise, 0.0)
        if self.label_noise[1] > 1 or self.n_val < 1:
            raise ValueError(
                f"{owner}: expected label_noise <= 1 and n_val >= 1, "
                f"got {self.label_noise=}, {self.n_val=}"
            )

    def sample_task(self, rng: np.random.Generator, split: str) -> SupervisedTask:
        check_split(self.name, split, self.splits)
        lo, hi = self.train_features if split == "train" else self.heldout_features
        data = GaussianMixtureData(
            n_features=int(rng.integers(lo, hi + 1)),
            n_classes=int(rng.integers(self.n_classes[0], self.n_classes[1] + 1)),
            clusters_per_class=int(
                rng.integers(self.clusters_per_class[0], self.clusters_per_class[1] + 1)
            ),
            separation=round(float(rng.uniform(*self.separation)), 3),
            label_noise=round(float(rng.uniform(*self.label_noise)), 3),
            n_train=log_uniform_int(rng, *self.n_train),
            n_val=self.n_val,
        )
        cost = _mlp_cost(data.n_features, data.n_classes)
        sampled = self.choices.sample(rng, split, data.n_train, cost)
        return _build_task(self.name, data, data.n_features, data.n_classes, sampled)


# ---------------------------------------------------------------- teacher regression


@dataclasses.dataclass(frozen=True)
class TeacherRegressionData:
    """Regression onto a random one-hidden-layer tanh teacher network (drawn per run),
    targets standardised on the training set, plus Gaussian noise."""

    n_features: int
    n_outputs: int
    teacher_width: int
    noise_std: float
    n_train: int
    n_val: int = 512
    loss: str = "mse"

    def describe(self) -> str:
        return (
            f"d={self.n_features},m={self.n_outputs},teacher={self.teacher_width},"
            f"noise={self.noise_std:.2f},n={self.n_train}"
        )

    def generate(self, rng: np.random.Generator) -> SupervisedData:
        d, h, m = self.n_features, self.teacher_width, self.n_outputs
        w1 = rng.normal(size=(d, h)) * (1.5 / math.sqrt(d))
        b1 = rng.normal(size=h) * 0.5
        w2 = rng.normal(size=(h, m)) / math.sqrt(h)
        n = self.n_train + self.n_val
        x = rng.normal(size=(n, d))
        f = np.tanh(x @ w1 + b1) @ w2
        f = (f - f[: self.n_train].mean(0)) / (f[: self.n_train].std(0) + 1e-8)
        y = f + self.noise_std * rng.normal(size=f.shape)
        x_t, y_t = _tensor(x), _tensor(y)
        return SupervisedData(
            x_t[: self.n_train], y_t[: self.n_train], x_t[self.n_train :], y_t[self.n_train :]
        )


@dataclasses.dataclass(frozen=True)
class TeacherRegressionMlpFamily:
    """MLP regression onto random teacher networks of varied input/output size and noise.

    Splits: ``heldout`` uses wider inputs (`heldout_features`) and held-out activations /
    AdamW.
    """

    name: str = "teacher_regression_mlp"
    splits: tuple[str, ...] = ("train", "heldout")
    train_features: tuple[int, int] = (2, 16)
    heldout_features: tuple[int, int] = (17, 32)
    n_outputs: tuple[int, int] = (1, 4)
    teacher_width: tuple[int, int] = (4, 64)
    noise_std: tuple[float, float] = (0.05, 0.5)
    n_train: tuple[int, int] = (128, 1024)
    n_val: int = 512
    choices: TrainingChoices = dataclasses.field(default_factory=TrainingChoices)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("train_features", "heldout_features", "n_outputs", "teacher_width", "n_train"):
            check_int_range(owner, name, getattr(self, name))
        check_float_range(owner, "noise_std", self.noise_std, 0.0)
        if self.n_val < 1:
            raise ValueError(f"{owner}.n_val must be >= 1, got {self.n_val}")

    def sample_task(self, rng: np.random.Generator, split: str) -> SupervisedTask:
        check_split(self.name, split, self.splits)
        lo, hi = self.train_features if split == "train" else self.heldout_features
        data = TeacherRegressionData(
            n_features=int(rng.integers(lo, hi + 1)),
            n_outputs=int(rng.integers(self.n_outputs[0], self.n_outputs[1] + 1)),
            teacher_width=log_uniform_int(rng, *self.teacher_width),
            noise_std=round(float(rng.uniform(*self.noise_std)), 3),
            n_train=log_uniform_int(rng, *self.n_train),
            n_val=self.n_val,
        )
        cost = _mlp_cost(data.n_features, data.n_outputs)
        sampled = self.choices.sample(rng, split, data.n_train, cost)
        return _build_task(self.name, data, data.n_features, data.n_outputs, sampled)


# ---------------------------------------------------------------- sinusoid


@dataclasses.dataclass(frozen=True)
class SinusoidData:
    """Few-shot sinusoid regression as in MAML (Finn et al., 2017): each run fits
    ``A sin(x + phase)`` with ``A ~ U(amplitude)``, ``phase ~ U(0, pi)``, ``x ~ U(x_range)``."""

    n_train: int
    amplitude: tuple[float, float] = (0.1, 5.0)
    x_range: tuple[float, float] = (-5.0, 5.0)
    noise_std: float = 0.1
    n_val: int = 256
    loss: str = "mse"

    def describe(self) -> str:
        return f"x={self.x_range[0]:g}..{self.x_range[1]:g},noise={self.noise_std:.2f},n={self.n_train}"

    def generate(self, rng: np.random.Generator) -> SupervisedData:
        amplitude = rng.uniform(*self.amplitude)
        phase = rng.uniform(0.0, math.pi)
        n = self.n_train + self.n_val
        x = rng.uniform(*self.x_range, size=(n, 1))
        y = amplitude * np.sin(x + phase) + self.noise_std * rng.normal(size=(n, 1))
        x_t, y_t = _tensor(x), _tensor(y)
        return SupervisedData(
            x_t[: self.n_train], y_t[: self.n_train], x_t[self.n_train :], y_t[self.n_train :]
        )


@dataclasses.dataclass(frozen=True)
class SinusoidMlpFamily:
    """MAML-style sinusoid regression with few (tens to hundreds of) training points.

    Splits: ``heldout`` uses held-out activations / AdamW.
    """

    name: str = "sinusoid_mlp"
    splits: tuple[str, ...] = ("train", "heldout")
    n_train: tuple[int, int] = (20, 400)
    noise_std: tuple[float, float] = (0.0, 0.3)
    choices: TrainingChoices = dataclasses.field(
        default_factory=lambda: TrainingChoices(
            widths=(20, 40, 64),
            depths=(2, 3),
            batch_sizes=(10, 20, 40),
            # Targets up to amplitude 5 make SGD gradients large: a cooler default.
            default_learning_rates=(
                ("sgd", 0.02),
                ("adam", 5e-3),
                ("adamw", 5e-3),
                ("rmsprop", 1e-3),
            ),
        )
    )

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_int_range(owner, "n_train", self.n_train)
        check_float_range(owner, "noise_std", self.noise_std, 0.0)

    def sample_task(self, rng: np.random.Generator, split: str) -> SupervisedTask:
        check_split(self.name, split, self.splits)
        data = SinusoidData(
            n_train=log_uniform_int(rng, *self.n_train),
            noise_std=round(float(rng.uniform(*self.noise_std)), 3),
        )
        sampled = self.choices.sample(rng, split, data.n_train, _mlp_cost(1, 1))
        return _build_task(self.name, data, 1, 1, sampled)
