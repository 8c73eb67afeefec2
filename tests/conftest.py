"""Shared fixtures: tiny seeded in-memory tasks (milliseconds to build and train)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tasks.nets import CnnSpec, MlpSpec
from tasks.supervised import DigitsData, GaussianMixtureData, SinusoidData, SupervisedTask

_DEFAULT_LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3}
_WEIGHT_DECAY = {"sgd": 1e-4, "adam": 1e-4, "adamw": 1e-2}


def make_tiny_task(kind: str = "classification", optimizer: str = "sgd") -> SupervisedTask:
    """A small task of ``kind`` (``classification``, ``regression``, ``digits_cnn``)."""
    if kind == "classification":
        data: object = GaussianMixtureData(
            n_features=5,
            n_classes=3,
            clusters_per_class=2,
            separation=3.0,
            label_noise=0.05,
            n_train=96,
            n_val=64,
        )
        net: MlpSpec | CnnSpec = MlpSpec(5, (16, 16), 3, "tanh")
    elif kind == "regression":
        data = SinusoidData(n_train=64, n_val=64)
        net = MlpSpec(1, (16, 16), 1, "relu")
    elif kind == "digits_cnn":
        data = DigitsData(n_train=96, n_val=64, images=True)
        net = CnnSpec(8, 1, (3, 4), 10, hidden=8, activation="relu")
    else:
        raise ValueError(f"unknown tiny task kind {kind!r}")
    return SupervisedTask(
        family=f"tiny_{kind}",
        data=data,  # type: ignore[arg-type]
        net=net,
        optimizer=optimizer,
        batch_size=16,
        default_learning_rate=_DEFAULT_LR[optimizer] * (0.2 if kind == "regression" else 1.0),
        default_weight_decay=_WEIGHT_DECAY[optimizer],
        control_steps=6,
        updates_per_step=4,
    )


@pytest.fixture
def tiny_task_factory() -> Callable[..., SupervisedTask]:
    """``factory(kind="classification", optimizer="sgd") -> SupervisedTask``."""
    return make_tiny_task


@pytest.fixture
def tiny_task() -> SupervisedTask:
    """A tiny Gaussian-mixture classification task trained by SGD with momentum."""
    return make_tiny_task()
