"""`FunctionalTask`: one `nn.Module` training problem, built as a `FunctionalBatchedRun`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import torch

from hpo_env.device import resolve_device
from hpo_env.errors import ConfigError, unknown_name_error
from tasks.engine import DATA_STREAM, HPARAM_STREAM, SupervisedData, derive_seed
from tasks.functional.data import CharData, ImageData, TableData
from tasks.functional.run import (
    FunctionalBatchedRun,
    FunctionalTorchRun,
    ModelConfig,
    ModuleNet,
    check_finite_positive,
)
from tasks.optim import OPTIMIZERS

LR_LOG10_RANGE = {
    "sgd": (-2.0, 2.0),
    "adam": (-2.0, 1.5),
    "adamw": (-2.0, 1.5),
    "rmsprop": (-2.0, 1.0),
}
"""Initial learning rates are ``default * 10 ** U(low, high)``: from far too cold to far too
hot. The hot end is lower for the sign-like first steps of Adam (``lr`` per coordinate)
and RMSprop (``10 lr`` per coordinate): ×10 is already far too hot for RMSprop, and
beyond it runs are chaotic (a float rounding grows to a different run in a few steps)."""


@functools.lru_cache(maxsize=64)
def module_net(config: ModelConfig) -> ModuleNet:
    """The (cached) `ModuleNet` of a model config: one meta module and vmap per process."""
    return ModuleNet(config)


@dataclasses.dataclass(frozen=True)
class FunctionalTask:
    """A supervised problem on an ordinary `nn.Module`; implements `hpo_env.protocol.Task`.

    Example:
        >>> from tasks.functional.models import ResMlpConfig
        >>> from tasks.functional.data import TableData
        >>> task = FunctionalTask(
        ...     family="example", data=TableData("iris"), model=ResMlpConfig(4, 3),
        ...     optimizer="adam", batch_size=16, default_learning_rate=1e-3)
        >>> run = task.build([0, 1])
        >>> tuple(run.train(5).train_loss.shape), tuple(run.evaluate().shape)
        ((2,), (2,))
    """

    family: str
    """Name of the family that sampled it."""
    data: CharData | TableData | ImageData
    """How each run's data set is drawn."""
    model: ModelConfig
    """The network (a frozen config that builds the `nn.Module`)."""
    optimizer: str
    """``"sgd"`` (with momentum), ``"adam"``, ``"adamw"`` or ``"rmsprop"``."""
    batch_size: int
    """Minibatch size (at most ``data.n_train``)."""
    default_learning_rate: float
    """A sensible constant learning rate for this task."""
    control_steps: int = 50
    """Control decisions per episode (T)."""
    updates_per_step: int = 20
    """Inner updates per decision (K); a run is ``T * K`` updates."""
    default_momentum: float = 0.9
    """Initial SGD momentum / Adam beta1 / RMSprop momentum."""
    default_weight_decay: float = 0.0
    """Initial weight decay (L2 for SGD/Adam/RMSprop, decoupled for AdamW)."""
    loss_scale: float = 1.0
    """The training and validation objective is ``loss_scale`` times the mean loss."""
    max_grad_norm: float | None = None
    """Per-run gradient clipping (``clip_grad_norm_``); None: no clipping."""
    lr_log10_range: tuple[float, float] | None = None
    """Initial learning rates are ``default * 10 ** U(low, high)``; None: the optimizer's
    `LR_LOG10_RANGE`."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name_error("optimizer", self.optimizer, OPTIMIZERS)
        if not 1 <= self.batch_size <= self.data.n_train:
            raise ConfigError(
                f"batch_size must be in [1, n_train={self.data.n_train}], got {self.batch_size}"
            )
        for name in ("control_steps", "updates_per_step"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_finite_positive("FunctionalTask", "default_learning_rate", self.default_learning_rate)
        check_finite_positive("FunctionalTask", "loss_scale", self.loss_scale)
        if self.max_grad_norm is not None:
            check_finite_positive("FunctionalTask", "max_grad_norm", self.max_grad_norm)
        if not 0 <= self.default_momentum < 1:
            raise ConfigError(f"default_momentum must be in [0, 1), got {self.default_momentum}")
        if self.lr_log10_range is not None and not (
            len(self.lr_log10_range) == 2 and self.lr_log10_range[0] <= self.lr_log10_range[1]
        ):
            raise ConfigError(
                f"lr_log10_range must be (low, high), low <= high, got {self.lr_log10_range!r}"
            )
        if self.default_weight_decay < 0:
            raise ConfigError(f"default_weight_decay must be >= 0, got {self.default_weight_decay}")

    @property
    def name(self) -> str:
        clip = f",clip={self.max_grad_norm:g}" if self.max_grad_norm is not None else ""
        return (
            f"{self.family}({self.data.describe()},{self.model.describe()},{self.optimizer},"
            f"bs={self.batch_size},wd={self.default_weight_decay:g},ls={self.loss_scale:.2g}{clip},"
            f"T={self.control_steps},K={self.updates_per_step})"
        )

    @property
    def net(self) -> ModuleNet:
        return module_net(self.model)  # type: ignore[arg-type]  # frozen dataclass: hashable

    @property
    def loss(self) -> str:
        return self.data.loss

    @property
    def n_train(self) -> int:
        return self.data.n_train

    @property
    def total_updates(self) -> int:
        """The run's length in updates (``T * K``)."""
        return self.control_steps * self.updates_per_step

    def default_hparams(self) -> dict[str, float]:
        """A sensible constant setting (the baseline a tuning policy must beat)."""
        return {
            "learning_rate": self.default_learning_rate,
            "momentum": self.default_momentum,
            "weight_decay": self.default_weight_decay,
        }

    def initial_hparams(self, seed: int) -> dict[str, float]:
        """Run ``seed``'s start: the learning rate log-uniform around the default."""
        rng = np.random.default_rng(derive_seed(seed, HPARAM_STREAM))
        hparams = self.default_hparams()
        low, high = self.lr_log10_range or LR_LOG10_RANGE[self.optimizer]
        exponent = rng.uniform(low, high)
        hparams["learning_rate"] = float(self.default_learning_rate * 10.0**exponent)
        return hparams

    def make_data(self, seed: int) -> SupervisedData:
        """Run ``seed``'s data set."""
        return self.data.generate(np.random.default_rng(derive_seed(seed, DATA_STREAM)))

    def build(
        self, seeds: Sequence[int], device: str | torch.device = "cpu"
    ) -> FunctionalBatchedRun:
        """B = ``len(seeds)`` runs trained together with ``torch.func`` on ``device``."""
        return FunctionalBatchedRun(self, seeds, resolve_device(device))

    def make_torch_run(self, seed: int) -> FunctionalTorchRun:
        """Run ``seed`` as the plain PyTorch loop (module, ``torch.optim``, minibatches)."""
        return FunctionalTorchRun(self, seed)
