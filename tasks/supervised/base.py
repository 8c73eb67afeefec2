"""`SupervisedTask`: the one task type every supervised family builds.

A task is structure only (data-set shape, network, optimizer, batch size,
budget); everything random about a run (the data draw or split, teacher,
initial parameters, minibatch order, initial learning rate) comes from the
run's seed, so ``task.build(seeds)`` is reproducible and picklable tasks can be
shipped to worker processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from hpo_env.device import resolve_device
from tasks.engine import (
    DATA_STREAM,
    HPARAM_STREAM,
    LOSSES,
    SupervisedBatchedRun,
    SupervisedData,
    TorchRun,
    derive_seed,
)
from tasks.nets import CnnSpec, MlpSpec
from tasks.optim import OPTIMIZERS

TRAIN_ACTIVATIONS = ("relu", "tanh")
"""Activations of ``train``-split MLP variants."""
HELDOUT_ACTIVATIONS = ("gelu", "elu", "silu")
"""Activations only ``heldout`` variants use: a held-out task never equals a train one."""
TRAIN_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
"""Optimizers of ``train``-split variants: every optimizer users deploy the policy on
(a policy that never trained on one cannot tell its dynamics apart)."""
HELDOUT_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
"""Optimizers of ``heldout`` variants."""

DEFAULT_MOMENTUM = 0.9
"""SGD momentum / Adam beta1 at the start of every run (RMSprop: `DEFAULT_MOMENTUMS`)."""
DEFAULT_MOMENTUMS = {"sgd": 0.9, "adam": 0.9, "adamw": 0.9, "rmsprop": 0.0}
"""Initial momentum per optimizer (RMSprop's torch default is 0)."""
DEFAULT_WEIGHT_DECAY = {"sgd": 1e-4, "adam": 1e-4, "adamw": 1e-2, "rmsprop": 1e-4}
"""Initial weight decay per optimizer (L2 for SGD/Adam, decoupled for AdamW)."""
LR_LOG10_SPREAD = 2.0
"""A run's initial learning rate is ``default * 10 ** U(-spread, spread)``: four decades,
from far too cold to far too hot for every optimizer, so that the start rate alone
does not tell the policy what to do and it must read the run's dynamics."""


class DataSpec(Protocol):
    """How one run's data set is drawn (a frozen, picklable dataclass)."""

    @property
    def loss(self) -> str:
        """``"cross_entropy"`` (labels) or ``"mse"`` (targets)."""
        ...

    @property
    def n_train(self) -> int: ...

    def generate(self, rng: np.random.Generator) -> SupervisedData: ...

    def describe(self) -> str:
        """Short text for the task name, e.g. ``"d=8,c=3,n=512"``."""
        ...


@dataclasses.dataclass(frozen=True)
class SupervisedTask:
    """A supervised base-training problem; implements `hpo_env.protocol.Task`.

    Example:
        >>> from tasks.distribution import task_by_name
        >>> task = task_by_name("digits_mlp")
        >>> run = task.build([0, 1, 2])
        >>> stats = run.train(task.updates_per_step)
        >>> tuple(stats.train_loss.shape), tuple(run.evaluate().shape)
        ((3,), (3,))
    """

    family: str
    """Name of the family that sampled it."""
    data: DataSpec
    """How each run's data set is drawn."""
    net: MlpSpec | CnnSpec
    """The base network's architecture."""
    optimizer: str
    """``"sgd"`` (with momentum), ``"adam"``, ``"adamw"`` or ``"rmsprop"``."""
    batch_size: int
    """Minibatch size (at most ``data.n_train``; the last partial batch is dropped)."""
    default_learning_rate: float
    """A sensible constant learning rate for this task (the family's default)."""
    control_steps: int = 30
    """Control decisions per episode (T)."""
    updates_per_step: int = 10
    """Inner updates per decision (K)."""
    default_momentum: float = DEFAULT_MOMENTUM
    """Initial SGD momentum / Adam beta1."""
    default_weight_decay: float = 1e-4
    """Initial weight decay."""
    lr_log10_spread: float = LR_LOG10_SPREAD
    """Initial learning rates are drawn log-uniformly within this many decades of the default."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.data.loss not in LOSSES:
            raise ValueError(f"data.loss must be one of {list(LOSSES)}, got {self.data.loss!r}")
        if not 1 <= self.batch_size <= self.data.n_train:
            raise ValueError(
                f"batch_size must be in [1, n_train={self.data.n_train}], got {self.batch_size}"
            )
        for name in ("control_steps", "updates_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.default_learning_rate > 0:
            raise ValueError(f"default_learning_rate must be > 0, got {self.default_learning_rate}")
        if not 0 <= self.default_momentum < 1:
            raise ValueError(f"default_momentum must be in [0, 1), got {self.default_momentum}")
        if self.lr_log10_spread < 0:
            raise ValueError(f"lr_log10_spread must be >= 0, got {self.lr_log10_spread}")

    @property
    def name(self) -> str:
        net = self.net
        if isinstance(net, MlpSpec):
            arch = "mlp=" + ("x".join(map(str, net.hidden)) or "linear")
        else:
            arch = (
                "cnn="
                + "x".join(map(str, net.channels))
                + (f",h={net.hidden}" if net.hidden else "")
            )
        return (
            f"{self.family}({self.data.describe()},{arch},{net.activation},{self.optimizer},"
            f"bs={self.batch_size},T={self.control_steps},K={self.updates_per_step})"
        )

    @property
    def loss(self) -> str:
        return self.data.loss

    @property
    def n_train(self) -> int:
        return self.data.n_train

    def default_hparams(self) -> dict[str, float]:
        """A sensible constant setting (the baseline a tuning policy must beat)."""
        return {
            "learning_rate": self.default_learning_rate,
            "momentum": self.default_momentum,
            "weight_decay": self.default_weight_decay,
        }

    def initial_hparams(self, seed: int) -> dict[str, float]:
        """Run ``seed``'s starting hyperparameters: the learning rate is drawn log-uniformly
        around the default, so runs start too cold, about right, or too hot."""
        rng = np.random.default_rng(derive_seed(seed, HPARAM_STREAM))
        exponent = rng.uniform(-self.lr_log10_spread, self.lr_log10_spread)
        hparams = self.default_hparams()
        hparams["learning_rate"] = float(self.default_learning_rate * 10.0**exponent)
        return hparams

    def make_data(self, seed: int) -> SupervisedData:
        """Run ``seed``'s data set."""
        return self.data.generate(np.random.default_rng(derive_seed(seed, DATA_STREAM)))

    def build(
        self, seeds: Sequence[int], device: str | torch.device = "cpu"
    ) -> SupervisedBatchedRun:
        """B = ``len(seeds)`` runs trained in lockstep on ``device`` (a name `hpo_env.device`
        accepts: ``cpu``, ``cuda``, ``cuda:N``, ``auto``); run i is determined by ``seeds[i]``."""
        return SupervisedBatchedRun(self, seeds, resolve_device(device))

    def make_torch_run(self, seed: int) -> TorchRun:
        """Run ``seed`` as a plain PyTorch model + ``torch.optim`` optimizer + minibatches."""
        return TorchRun(self, seed)


def pick(rng: np.random.Generator, options: Sequence[object]) -> object:
    """One element of ``options`` (uniformly), keeping its Python type."""
    return options[int(rng.integers(len(options)))]
