"""Control families: splits, held-out regimes, per-run contexts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.control import CARTPOLE_DEFAULT, ContextRange, ControlTask, control_families, get_system
from tasks.family import TaskFamily


def test_families_follow_the_protocol_and_offer_splits() -> None:
    families = {f.name: f for f in control_families()}
    assert set(families) == {"control_cartpole", "control_acrobot"}
    for family in families.values():
        assert isinstance(family, TaskFamily)
    assert families["control_cartpole"].splits == ("train", "heldout")
    assert families["control_acrobot"].splits == ("heldout",)
    with pytest.raises(ValueError, match="train"):
        families["control_acrobot"].sample_task(np.random.default_rng(0), "train")


def test_heldout_cartpole_lies_outside_the_training_box() -> None:
    family = control_families()[0]
    defaults = get_system("cartpole").context_defaults
    rng = np.random.default_rng(0)
    for _ in range(50):
        train = family.sample_task(rng, "train")
        assert all(
            r.low / defaults[r.name] >= 0.5 / 1.1 - 1e-9
            and r.high / defaults[r.name] <= 2.0 * 1.1 + 1e-9
            for r in train.context
        )
        held = family.sample_task(rng, "heldout")
        ranges = {
            r.name: (r.low / defaults[r.name], r.high / defaults[r.name]) for r in held.context
        }
        extreme_gravity = ranges["gravity"][0] >= 2.5 / 1.1 - 1e-9
        short_pole = ranges["length"][1] <= 0.45 * 1.1 + 1e-9
        assert extreme_gravity or short_pole, held.name
        assert held.family == "control_cartpole" and held.name.startswith("cartpole/heldout[")


def test_sampling_is_seeded() -> None:
    family = control_families()[0]
    a = family.sample_task(np.random.default_rng(3), "train")
    b = family.sample_task(np.random.default_rng(3), "train")
    assert a == b and hash(a) == hash(b)


def test_runs_draw_their_context_from_the_task_box() -> None:
    task = ControlTask(context=(ContextRange("gravity", 5.0, 20.0),))
    run = task.build(list(range(16)))
    gravity = run.env.context["gravity"].reshape(-1)
    assert ((gravity >= 5.0) & (gravity <= 20.0)).all() and gravity.std() > 1.0
    assert torch.equal(run.env.context["length"], torch.full((16, 1), 0.5, dtype=torch.float64))
    again = task.build([3])
    assert again.env.context["gravity"].item() == gravity[3].item()


def test_task_validates() -> None:
    with pytest.raises(ValueError, match="unknown control system"):
        ControlTask(system="cartpol")
    with pytest.raises(ValueError, match="unknown context"):
        ControlTask(context=(ContextRange("link_mass_1", 1.0, 2.0),))
    with pytest.raises(ValueError, match="low"):
        ContextRange("gravity", 2.0, 1.0)
    assert CARTPOLE_DEFAULT.default_hparams() == {"learning_rate": 3e-3, "entropy_coef": 0.01}
