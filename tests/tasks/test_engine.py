"""The batched supervised engine: twin parity, statistics contract, isolation of runs."""

from __future__ import annotations

import pickle

import pytest
import torch

from hpo_env.protocol import BatchedRun, Task
from tests.conftest import make_tiny_task

TWIN_CASES = [
    ("classification", "sgd"),
    ("regression", "adam"),
    ("digits_cnn", "adamw"),
    ("classification", "adamw"),
]


@pytest.mark.parametrize(("kind", "optimizer"), TWIN_CASES)
def test_torch_twin_reproduces_the_batched_slot(kind: str, optimizer: str) -> None:
    """TorchRun (nn.Module + torch.optim + next_batch) trains exactly like slot 1 of B=3."""
    task = make_tiny_task(kind, optimizer)
    seeds = [11, 12, 13]
    run = task.build(seeds)
    twin = task.make_torch_run(12)
    assert twin.optimizer.param_groups[0]["lr"] == pytest.approx(
        float(run.get_hyperparameters()["learning_rate"][1]), rel=1e-6
    )
    assert twin.val_loss() == pytest.approx(float(run.evaluate()[1]), rel=1e-5)
    batched_losses, twin_losses = [], []
    for _ in range(15):
        batched_losses.append(float(run.train(1).train_loss[1]))
        x, y = twin.next_batch()
        twin.optimizer.zero_grad()
        loss = twin.loss_fn(twin.model(x), y)
        loss.backward()
        twin.optimizer.step()
        twin_losses.append(loss.item())
    assert batched_losses == pytest.approx(twin_losses, rel=2e-4, abs=1e-5)
    assert twin.val_loss() == pytest.approx(float(run.evaluate()[1]), rel=2e-4)


def test_stats_follow_the_contract(tiny_task) -> None:
    run = tiny_task.build([0, 1])
    assert isinstance(run, BatchedRun)
    assert isinstance(tiny_task, Task)
    theta0 = run.theta.clone()
    losses = []
    for _ in range(3):
        losses.append(run.train(1).train_loss)
    run2 = tiny_task.build([0, 1])
    stats = run2.train(3)
    stacked = torch.stack(losses)
    torch.testing.assert_close(stats.train_loss, stacked.mean(0))
    torch.testing.assert_close(stats.train_loss_std, stacked.std(0, correction=0))
    torch.testing.assert_close(stats.train_loss_first, stacked[0])
    assert torch.equal(stats.grad_cosine, torch.zeros(2))  # first interval
    expected_ratio = (run2.theta - theta0).norm(dim=1) / (theta0.norm(dim=1) + 1e-12)
    torch.testing.assert_close(stats.update_ratio, expected_ratio)
    assert stats.n_updates == 3
    assert set(stats.hparams) == set(run2.hparam_names)
    assert torch.isnan(stats.val_loss).all() and torch.isnan(stats.progress).all()
    second = run2.train(3)
    assert (second.grad_cosine.abs() > 0).all() and (second.grad_cosine.abs() <= 1 + 1e-6).all()
    assert torch.equal(run2.train(1).train_loss_std, torch.zeros(2))  # K == 1


def test_grad_norm_excludes_weight_decay(tiny_task) -> None:
    """grad_norm is the gradient of the objective only: weight decay leaves it unchanged."""
    base = tiny_task.build([3])
    decayed = tiny_task.build([3])
    decayed.set_hyperparameters({"weight_decay": torch.tensor([0.5])})
    torch.testing.assert_close(base.train(1).grad_norm, decayed.train(1).grad_norm)


def test_diverged_run_does_not_touch_the_others(tiny_task) -> None:
    seeds = [4, 5, 6]
    calm = tiny_task.build(seeds)
    wild = tiny_task.build(seeds)
    hp = calm.get_hyperparameters()
    hp["learning_rate"] = torch.tensor([0.05, 1e6, 0.05])
    calm.set_hyperparameters({"learning_rate": torch.full((3,), 0.05)})
    wild.set_hyperparameters(hp)
    for _ in range(4):
        a, b = calm.train(4), wild.train(4)
        for field in ("train_loss", "grad_norm", "grad_cosine", "update_ratio"):
            assert torch.equal(getattr(a, field)[[0, 2]], getattr(b, field)[[0, 2]]), field
    val = wild.evaluate()
    assert not torch.isfinite(val[1]) or val[1] > 100 * calm.evaluate()[1]
    assert torch.equal(calm.evaluate()[[0, 2]], val[[0, 2]])


def test_hyperparameter_validation(tiny_task) -> None:
    run = tiny_task.build([0, 1])
    with pytest.raises(ValueError, match="did you mean 'learning_rate'"):
        run.set_hyperparameters({"learning_rte": torch.ones(2)})
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        run.set_hyperparameters({"momentum": torch.ones(3)})
    run.set_hyperparameters({"momentum": torch.tensor([0.1, 0.2])})
    torch.testing.assert_close(run.get_hyperparameters()["momentum"], torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="one seed per index"):
        run.reset_runs([0], [1, 2])
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        run.reset_runs([2], [1])
    with pytest.raises(ValueError, match="non-negative"):
        tiny_task.build([-1])


def test_initial_learning_rates_spread_around_the_default(tiny_task) -> None:
    lrs = torch.tensor([tiny_task.initial_hparams(s)["learning_rate"] for s in range(400)])
    log_ratio = torch.log10(lrs / tiny_task.default_learning_rate)
    spread = tiny_task.lr_log10_spread
    assert log_ratio.min() >= -spread and log_ratio.max() <= spread
    assert log_ratio.min() < -0.8 * spread and log_ratio.max() > 0.8 * spread


def test_reset_mid_epoch_keeps_positions_per_run(tiny_task) -> None:
    """After a reset the slot restarts its own minibatch order while the others continue."""
    run = tiny_task.build([0, 1])
    run.train(3)
    run.reset_runs([0], [9])
    fresh = tiny_task.build([9])
    cont = tiny_task.build([0, 1])
    cont.train(3)
    for _ in range(3):
        s, f, c = run.train(5), fresh.train(5), cont.train(5)
        torch.testing.assert_close(s.train_loss[0], f.train_loss[0])
        torch.testing.assert_close(s.train_loss[1], c.train_loss[1])


def test_minibatch_order_matches_the_twins_across_draws_and_resets(tiny_task) -> None:
    """Epochs come from a bank of drawn permutations (42 epochs of 6 batches per draw
    here): every slot's minibatches are its twin's, across several draws, with a
    slot reset mid-draw."""
    run = tiny_task.build([11, 12, 13])
    twins = {i: tiny_task.make_torch_run(seed) for i, seed in enumerate([11, 12, 13])}
    for step in range(600):  # past two draws of 252 minibatches
        if step == 101:
            run.reset_runs([1], [20])
            twins[1] = tiny_task.make_torch_run(20)
        x, y = run._next_batch()  # the minibatches the next update would use
        for i, twin in twins.items():
            twin_x, twin_y = twin.next_batch()
            assert torch.equal(x[i], twin_x) and torch.equal(y[i], twin_y), (step, i)


def test_task_pickles(tiny_task_factory) -> None:
    task = tiny_task_factory("digits_cnn", "adam")
    clone = pickle.loads(pickle.dumps(task))
    assert clone == task and clone.name == task.name


def test_reset_all_runs_in_any_order(tiny_task) -> None:
    run = tiny_task.build([0, 1])
    run.train(2)
    run.reset_runs([1, 0], [5, 6])
    fresh = tiny_task.build([6, 5])
    for _ in range(2):
        a, b = run.train(3), fresh.train(3)
        torch.testing.assert_close(a.train_loss, b.train_loss)
    torch.testing.assert_close(run.evaluate(), fresh.evaluate())


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_subsample_evaluation_is_the_twins_loss_on_the_first_examples(kind: str) -> None:
    task = make_tiny_task(kind)
    run = task.build([3, 4])
    run.train(3)
    twin = task.make_torch_run(4)
    for _ in range(3):  # the same three updates on the plain-PyTorch twin
        x, y = twin.next_batch()
        twin.optimizer.zero_grad()
        twin.loss_fn(twin.model(x), y).backward()
        twin.optimizer.step()
    n = 16  # a quarter of n_val = 64
    with torch.no_grad():
        expected = twin.loss_fn(twin.model(twin.data.x_val[:n]), twin.data.y_val[:n])
    assert float(run.evaluate(0.25)[1]) == pytest.approx(float(expected), rel=2e-4)


def test_subsample_of_the_whole_set_equals_the_full_evaluation(tiny_task) -> None:
    run = tiny_task.build([0, 1, 2])
    run.train(2)
    full = run.evaluate()
    # ceil(0.999 * 64) = 64: the "subsample" is the whole set.
    assert torch.equal(run.evaluate(0.999), full)
    both = run.evaluate_prefixes((1.0, 0.25))
    assert torch.equal(both[0], full) and torch.equal(both[1], run.evaluate(0.25))
    assert both.device == torch.device("cpu") and both.shape == (2, 3)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_evaluation_fraction_is_validated(tiny_task, fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        tiny_task.build([0]).evaluate(fraction)
