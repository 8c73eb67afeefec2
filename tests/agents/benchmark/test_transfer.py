"""The transfer loop and methods: determinism, divergence, every method on a tiny task, errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from agents.benchmark.transfer import methods
from agents.benchmark.transfer.data import load_dataset
from agents.benchmark.transfer.loop import DIVERGENCE_FACTOR, batch_order, train_run
from agents.benchmark.transfer.suite import TaskSpec
from hpo_env.errors import ConfigError

ALL_METHODS = [*methods.default_baselines(), methods.PolicyMethod("default")]


def test_same_seed_same_numbers(tiny_task: TaskSpec) -> None:
    first = train_run(tiny_task, methods.CosineWarmup(), seed=3)
    again = train_run(tiny_task, methods.CosineWarmup(), seed=3)
    other = train_run(tiny_task, methods.CosineWarmup(), seed=4)
    assert first.val_losses == again.val_losses and first.lrs == again.lrs
    assert first.objective == again.objective
    assert other.first_val != first.first_val  # another split and init


def test_the_loop_leaves_global_torch_randomness_alone(tiny_task: TaskSpec) -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train_run(tiny_task, methods.Constant(), seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_data_split_is_seeded_and_disjoint() -> None:
    a, b = load_dataset("wine", 1), load_dataset("wine", 1)
    assert torch.equal(a.x_val, b.x_val)
    assert len(a.x_train) + len(a.x_val) == 178  # every wine sample, once
    chars = load_dataset("chars", 2, seq_len=8)
    assert chars.x_train.shape[1] == 8 and torch.equal(chars.x_train[:, 1:], chars.y_train[:, :-1])


def test_batch_order_walks_shuffled_epochs() -> None:
    order = batch_order(n_examples=10, batch_size=5, n_updates=4, seed=0)
    assert order.shape == (4, 5)
    assert sorted(order[:2].flatten().tolist()) == list(range(10))  # one epoch = every example once
    assert torch.equal(order, batch_order(10, 5, 4, seed=0))


@pytest.mark.parametrize("method", ALL_METHODS, ids=lambda m: m.name)
def test_every_method_runs_a_tiny_task(method: object, tiny_task: TaskSpec) -> None:
    result = train_run(tiny_task, method, seed=0)
    assert not result.diverged and math.isfinite(result.objective)
    assert result.val_steps == [0, 4, 8, 12]
    assert result.objective == result.val_losses[-1] < result.first_val * DIVERGENCE_FACTOR
    assert len(result.lrs) == 12 and all(lr > 0 for lr in result.lrs)


def test_schedule_free_sgd_path_and_eval_mode(tiny_sgd_task: TaskSpec) -> None:
    result = train_run(tiny_sgd_task, methods.ScheduleFree(), seed=0)
    assert math.isfinite(result.objective)
    control = methods.ScheduleFree().build(torch.nn.Linear(2, 1).parameters(), tiny_sgd_task, 0.1)
    assert type(control.optimizer).__name__ == "SGDScheduleFree"


def test_schedules_have_the_promised_shape() -> None:
    task = TaskSpec(
        "shape", "validation", "iris", "mlp", "sgd_momentum",
        batch_size=16, n_updates=100, start_lr=1.0, start_regime="typical", val_every=50, width=8,
    )  # fmt: skip
    cosine = train_run(task, methods.CosineWarmup(), seed=0)
    wsd = train_run(task, methods.WarmupStableDecay(), seed=0)
    # 5% warm-up: 1/5 of the rate at update 1, the full rate at update 5
    assert cosine.lrs[0] == pytest.approx(0.2) and cosine.lrs[4] == pytest.approx(1.0)
    # update 50 uses factor(49): 44 of the 95 post-warm-up updates done
    assert cosine.lrs[49] == pytest.approx(0.5 * (1 + math.cos(math.pi * 44 / 95)))
    assert wsd.lrs[50] == pytest.approx(1.0) and wsd.lrs[79] == pytest.approx(1.0)
    assert wsd.lrs[90] == pytest.approx(0.5)  # halfway through the last 20%


def test_divergence_is_a_finite_penalty_that_ranks_last(tiny_task: TaskSpec) -> None:
    hot = train_run(tiny_task, methods.Constant(), seed=0, lr_multiplier=1e6)
    sane = train_run(tiny_task, methods.Constant(), seed=0)
    assert hot.diverged and hot.objective == pytest.approx(hot.first_val * DIVERGENCE_FACTOR)
    assert math.isfinite(hot.objective) and hot.objective > sane.objective


def test_unknown_optimizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="expected sgd_momentum"):
        methods.make_optimizer("lamb", [torch.nn.Parameter(torch.zeros(1))], 0.1)


def test_policy_gets_validation_at_the_cadence(tiny_task: TaskSpec) -> None:
    seen: list[float | None] = []

    class Recording(methods.Constant):
        def build(self, params, task, start_lr):  # type: ignore[no-untyped-def]
            control = super().build(params, task, start_lr)
            control.after_update = lambda loss, val: seen.append(val)  # type: ignore[method-assign]
            return control

    train_run(dataclasses.replace(tiny_task, n_updates=8), Recording(), seed=0)
    assert [v is not None for v in seen] == [False, False, False, True] * 2
