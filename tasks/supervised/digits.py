"""Families on scikit-learn's bundled 8x8 digits data set (1797 images, 10 classes).

Each run draws its own random train / validation split from its seed. The
data ship with scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from tasks.engine import SupervisedData
from tasks.family import check_split
from tasks.nets import ACTIVATIONS, CnnSpec, MlpSpec, macs_per_example
from tasks.supervised.base import (
    DEFAULT_MOMENTUMS,
    DEFAULT_WEIGHT_DECAY,
    HELDOUT_OPTIMIZERS,
    SupervisedTask,
    pick,
)
from tasks.supervised.choices import TrainingChoices, check_int_range, log_uniform_int

N_DIGITS = 1797
"""Images in `sklearn.datasets.load_digits`."""


@functools.lru_cache(maxsize=1)
def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Pixels scaled to [0, 1] as float32 [1797, 64] and labels as int64 [1797]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class DigitsData:
    """A random train / validation split of the digits (drawn per run)."""

    n_train: int
    n_val: int = 400
    images: bool = False
    """Shape inputs as [1, 8, 8] images (for CNNs) instead of flat [64] vectors."""
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_val < 1 or self.n_train + self.n_val > N_DIGITS:
            raise ValueError(
                f"DigitsData needs n_train, n_val >= 1 and n_train + n_val <= {N_DIGITS}, "
                f"got {self.n_train=}, {self.n_val=}"
            )

    def describe(self) -> str:
        return f"n={self.n_train}"

    def generate(self, rng: np.random.Generator) -> SupervisedData:
        x, y = load_digits_arrays()
        perm = rng.permutation(N_DIGITS)
        train, val = perm[: self.n_train], perm[self.n_train : self.n_train + self.n_val]
        shape = (1, 8, 8) if self.images else (64,)
        x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
        return SupervisedData(
            x_t[train].reshape(-1, *shape).contiguous(),
            y_t[train].contiguous(),
            x_t[val].reshape(-1, *shape).contiguous(),
            y_t[val].contiguous(),
        )


@dataclasses.dataclass(frozen=True)
class DigitsMlpFamily:
    """MLP classifiers on the digits, with per-run train/validation splits.

    Splits: ``heldout`` uses held-out activations / AdamW.
    """

    name: str = "digits_mlp"
    splits: tuple[str, ...] = ("train", "heldout")
    n_train: tuple[int, int] = (200, 1200)
    n_val: int = 400
    choices: TrainingChoices = dataclasses.field(default_factory=TrainingChoices)

    def __post_init__(self) -> None:
        check_int_range(type(self).__name__, "n_train", self.n_train)
        DigitsData(self.n_train[1], self.n_val)  # validates the sizes

    def sample_task(self, rng: np.random.Generator, split: str) -> SupervisedTask:
        check_split(self.name, split, self.splits)
        data = DigitsData(n_train=log_uniform_int(rng, *self.n_train), n_val=self.n_val)
        cost = lambda hidden: macs_per_example(MlpSpec(64, hidden, 10))  # noqa: E731
        sampled = self.choices.sample(rng, split, data.n_train, cost)
        net = MlpSpec(64, sampled.pop("hidden"), 10, sampled.pop("activation"))  # type: ignore[arg-type]
        return SupervisedTask(family=self.name, data=data, net=net, **sampled)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class DigitsCnnFamily:
    """Small CNNs (one or two 3x3 conv layers with 2x2 average pooling) on 8x8 digit images.

    Held out entirely: no CNN is ever trained during meta-training, so this family
    measures transfer to an unseen architecture.
    """

    name: str = "digits_cnn"
    splits: tuple[str, ...] = ("heldout",)
    n_train: tuple[int, int] = (200, 1200)
    n_val: int = 400
    channels: tuple[tuple[int, ...], ...] = ((4,), (8,), (4, 8))
    hidden: tuple[int, ...] = (0, 32)
    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    optimizers: tuple[str, ...] = HELDOUT_OPTIMIZERS
    # Convolutions cost more per example than the MLPs: smaller batches and K keep a
    # control step at B=64 comparable.
    choices: TrainingChoices = dataclasses.field(
        default_factory=lambda: TrainingChoices(batch_sizes=(16, 32), updates_per_step=(5, 10))
    )

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_int_range(owner, "n_train", self.n_train)
        DigitsData(self.n_train[1], self.n_val)
        if not self.channels or not self.activations or not self.optimizers:
            raise ValueError(
                f"{owner}: channels, activations and optimizers must be non-empty, got "
                f"{self.channels=}, {self.activations=}, {self.optimizers=}"
            )

    def sample_task(self, rng: np.random.Generator, split: str) -> SupervisedTask:
        check_split(self.name, split, self.splits)
        data = DigitsData(
            n_train=log_uniform_int(rng, *self.n_train), n_val=self.n_val, images=True
        )
        optimizer = str(pick(rng, self.optimizers))
        net = CnnSpec(
            image_size=8,
            in_channels=1,
            channels=tuple(pick(rng, self.channels)),  # type: ignore[arg-type]
            output_dim=10,
            hidden=int(pick(rng, self.hidden)),  # type: ignore[call-overload]
            activation=str(pick(rng, self.activations)),
        )
        c = self.choices
        cost = macs_per_example(net)
        while True:  # redraw batch size and K until a control step fits the compute budget
            batch_size = min(int(pick(rng, c.batch_sizes)), data.n_train)  # type: ignore[call-overload]
            updates = int(pick(rng, c.updates_per_step))  # type: ignore[call-overload]
            cheapest = batch_size == min(c.batch_sizes) and updates == min(c.updates_per_step)
            if cost * batch_size * updates <= c.max_step_macs or cheapest:
                break
        return SupervisedTask(
            family=self.name,
            data=data,
            net=net,
            optimizer=optimizer,
            batch_size=batch_size,
            control_steps=int(pick(rng, c.control_steps)),  # type: ignore[call-overload]
            updates_per_step=updates,
            default_learning_rate=float(dict(c.default_learning_rates)[optimizer]),
            default_weight_decay=DEFAULT_WEIGHT_DECAY[optimizer],
            default_momentum=DEFAULT_MOMENTUMS[optimizer],
        )
