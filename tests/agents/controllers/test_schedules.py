"""One definition of each schedule (`hpo_env.schedules`), read per interval, per update,
on tensors and on float32 scalars, by the prior and the baselines alike."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from agents.benchmark.transfer import methods
from agents.benchmark.transfer.suite import TaskSpec
from agents.controllers import schedules as controller_schedules
from hpo_env import space
from hpo_env.schedules import (
    CosineSchedule,
    CosineWarmupSchedule,
    WarmupStableDecaySchedule,
)


def test_the_controllers_and_the_prior_use_the_one_definition() -> None:
    assert controller_schedules.CosineSchedule is CosineSchedule
    assert isinstance(CosineSchedule(), CosineWarmupSchedule)
    prior = space.PRIORS["cosine_warmup"]
    assert prior.__self__ == CosineWarmupSchedule(warmup=0.05)  # type: ignore[attr-defined]


@pytest.mark.parametrize("warmup", [0.0, 0.05, 0.3])
def test_float_tensor_and_scalar_readings_agree(warmup: float) -> None:
    schedule = CosineWarmupSchedule(warmup)
    progress = np.linspace(0.0, 1.0, 201)
    floats = np.array([schedule(float(p)) for p in progress])
    tensor = schedule.tensor(torch.tensor(progress, dtype=torch.float32)).numpy()
    scalars = np.array([schedule.scalar_f32(float(p)) for p in progress])
    np.testing.assert_allclose(tensor, floats, atol=1e-6)
    np.testing.assert_array_equal(scalars, tensor)  # the scalar twin rounds as the tensor
    assert floats[0] == (1.0 if warmup == 0 else 0.0) and floats[-1] == pytest.approx(0.0)
    peak = int(np.argmax(floats))
    assert (np.diff(floats[peak:]) <= 1e-12).all()  # anneals after the warm-up


def test_per_update_reading_has_a_whole_update_warm_up_and_ends_near_zero() -> None:
    schedule = CosineWarmupSchedule(0.05)
    factors = [schedule.step_factor(step, 100) for step in range(100)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[5] == 1.0 and 0 < factors[-1] < 1e-3
    wsd = WarmupStableDecaySchedule(0.05, 0.2)
    factors = [wsd.step_factor(step, 100) for step in range(100)]
    assert factors[4:80] == [1.0] * 76 and factors[80] == 1.0 and factors[99] == pytest.approx(0.05)
    assert [wsd(p) for p in (0.0, 0.5, 0.9, 1.0)] == pytest.approx([0.0, 1.0, 0.5, 0.0])


def test_the_transfer_baselines_follow_the_schedules_per_update() -> None:
    task = TaskSpec(
        "t", "validation", "iris", "mlp", "adam",
        batch_size=8, n_updates=40, start_lr=0.1, start_regime="typical", val_every=10, width=8,
    )  # fmt: skip
    for method, schedule in (
        (methods.CosineWarmup(), CosineWarmupSchedule(0.05)),
        (methods.WarmupStableDecay(), WarmupStableDecaySchedule(0.05, 0.2)),
    ):
        control = method.build([torch.nn.Parameter(torch.zeros(1))], task, 0.1)
        for step in range(task.n_updates):
            assert control.lr == pytest.approx(0.1 * schedule.step_factor(step, 40), rel=1e-12)
            control.optimizer.step()
            control.after_update(1.0, None)


def test_schedules_validate_pickle_and_repr() -> None:
    for bad in (dict(warmup=1.0), dict(warmup=-0.1), dict(final_ratio=1.5)):
        with pytest.raises(ValueError):
            CosineWarmupSchedule(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decay"):
        WarmupStableDecaySchedule(0.5, 0.6)
    for schedule in (
        CosineWarmupSchedule(0.1, 0.01),
        WarmupStableDecaySchedule(),
        CosineSchedule(),
    ):
        clone = pickle.loads(pickle.dumps(schedule))
        assert clone == schedule and repr(clone) == repr(schedule)
    assert math.isclose(CosineSchedule(0.1)(1.0), 0.1)
