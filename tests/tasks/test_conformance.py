"""One conformance suite that every registered task family must pass (optuna-style).

Parametrized over `tasks.distribution.list_families()`, so a family joins the
suite by being registered (the control families from `tasks.control` included).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from hpo_env.protocol import BatchedRun, Task
from hpo_env.stats import StepStats
from tasks.control.tasks import ControlTask
from tasks.distribution import get_family, list_families

SEEDS = [101, 202, 303]
MANY_SEEDS = [101, 202, 303, 404, 505, 606, 707, 808]
"""Seeds of the statistical properties (chaotic control runs differ per CPU kernel)."""
CONTROL_SEEDS = [101 * i for i in range(1, 17)]
CASES = [(name, split) for name in list_families() for split in get_family(name).splits]
IDS = [f"{name}-{split}" for name, split in CASES]
STAT_FIELDS = ("train_loss", "train_loss_std", "grad_norm", "grad_cosine", "update_ratio")
RTOL = 1e-4
DEFAULT_LR_UPDATES = 80
"""Inner updates the default learning rate gets to lower the validation loss."""
DIVERGENCE_BUDGET = 8
"""Control steps an lr of 1e3 gets to show divergence."""


@pytest.fixture(params=CASES, ids=IDS)
def task(request: pytest.FixtureRequest) -> Task:
    name, split = request.param
    return get_family(name).sample_task(np.random.default_rng(2024), split)


def _set_defaults(run: BatchedRun, task: Task, **overrides: float) -> None:
    values = {**task.default_hparams(), **overrides}  # type: ignore[attr-defined]
    run.set_hyperparameters(
        {k: torch.full((run.n_runs,), float(v)) for k, v in values.items() if k in run.hparam_names}
    )


def _assert_stats_close(a: StepStats, b: StepStats, index_a: int = 0, index_b: int = 0) -> None:
    for field in STAT_FIELDS:
        x, y = getattr(a, field)[index_a], getattr(b, field)[index_b]
        torch.testing.assert_close(
            x, y, rtol=RTOL, atol=1e-6, equal_nan=True, msg=lambda m, f=field: f"{f}: {m}"
        )


def test_task_is_a_picklable_task(task: Task) -> None:
    assert isinstance(task, Task)
    assert isinstance(task.name, str) and task.name and task.family in list_families()
    assert 1 <= task.control_steps <= 100 and 1 <= task.updates_per_step <= 50
    clone = pickle.loads(pickle.dumps(task))
    assert clone.name == task.name
    defaults = task.default_hparams()  # type: ignore[attr-defined]
    assert "learning_rate" in defaults and defaults["learning_rate"] > 0


def test_sampling_is_seeded_and_checks_the_split(task: Task) -> None:
    family = get_family(task.family)
    split = family.splits[0]
    a = family.sample_task(np.random.default_rng(7), split)
    b = family.sample_task(np.random.default_rng(7), split)
    assert a.name == b.name
    with pytest.raises(ValueError, match="split"):
        family.sample_task(np.random.default_rng(7), "validation")


@pytest.mark.parametrize("n_runs", [1, 3])
def test_shapes(task: Task, n_runs: int) -> None:
    run = task.build(SEEDS[:n_runs])
    assert isinstance(run, BatchedRun) and run.n_runs == n_runs
    assert "learning_rate" in run.hparam_names
    hparams = run.get_hyperparameters()
    assert set(hparams) == set(run.hparam_names)
    assert all(v.shape == (n_runs,) and v.dtype == torch.float32 for v in hparams.values())
    val = run.evaluate()
    assert val.shape == (n_runs,) and val.dtype == torch.float32
    assert torch.isfinite(val).all() and (val > 0).all()
    _set_defaults(run, task)  # the drawn initial learning rates may be hot enough to diverge
    stats = run.train(task.updates_per_step)
    assert isinstance(stats, StepStats) and stats.n_runs == n_runs
    assert stats.n_updates == task.updates_per_step
    for field in STAT_FIELDS:
        value = getattr(stats, field)
        assert value.shape == (n_runs,) and torch.isfinite(value).all(), field
    assert set(run.hparam_names) <= set(stats.hparams)
    assert torch.isnan(stats.val_loss).all() and torch.isnan(stats.progress).all()


def test_same_seeds_same_numbers(task: Task) -> None:
    a, b = task.build(SEEDS), task.build(SEEDS)
    for _ in range(2):
        sa, sb = a.train(task.updates_per_step), b.train(task.updates_per_step)
        for field in STAT_FIELDS:
            torch.testing.assert_close(
                getattr(sa, field), getattr(sb, field), rtol=0, atol=0, equal_nan=True
            )
    torch.testing.assert_close(a.evaluate(), b.evaluate(), rtol=0, atol=0, equal_nan=True)


def test_runs_are_independent_of_batch(task: Task) -> None:
    """Run i of a B=3 batch equals the B=1 run built from seeds[i]."""
    batch = task.build(SEEDS)
    singles = [task.build([s]) for s in SEEDS]
    initial = batch.get_hyperparameters()
    for i, single in enumerate(singles):
        for name, value in single.get_hyperparameters().items():
            torch.testing.assert_close(initial[name][i], value[0])
    # Shared settings: a too-hot drawn rate would amplify rounding differences to chaos.
    for run in (batch, *singles):
        _set_defaults(run, task)
    for _ in range(2):
        stats = batch.train(task.updates_per_step)
        for i, single in enumerate(singles):
            _assert_stats_close(stats, single.train(task.updates_per_step), index_a=i)
    val = batch.evaluate()
    for i, single in enumerate(singles):
        torch.testing.assert_close(
            val[i], single.evaluate()[0], rtol=RTOL, atol=1e-6, equal_nan=True
        )


def test_default_learning_rate_reduces_the_loss(task: Task) -> None:
    """The default rate learns: a property over seeds that holds on any CPU.

    Supervised runs: the mean and the median validation loss of eight runs fall.
    Control runs are chaotic: which run learns within the budget depends on the last
    bit of a transcendental, i.e. on the CPU's kernels (on an Intel AVX-512 CPU two of
    three Acrobot runs of one seed set never left the -500 floor where an AMD CPU's
    one did). So over sixteen runs: at least one run's loss falls by >= 0.1, and the
    mean rises by no more than 10%. Measured over four disjoint seed sets on AMD:
    best drop 0.18-0.97, mean ratio 0.17-1.03."""
    is_control = isinstance(task, ControlTask)
    run = task.build(CONTROL_SEEDS if is_control else MANY_SEEDS)
    _set_defaults(run, task)
    before = run.evaluate()
    for _ in range(max(4, math.ceil(DEFAULT_LR_UPDATES / task.updates_per_step))):
        run.train(task.updates_per_step)
    after = run.evaluate()
    assert torch.isfinite(after).all(), f"{after=}"
    if is_control:
        assert (before - after).max() >= 0.1, f"no run learned: {before=} {after=}"
        assert after.mean() <= 1.1 * before.mean(), f"{before=} {after=}"
    else:
        assert after.mean() < before.mean(), f"{before=} {after=}"
        assert after.median() < before.median(), f"{before=} {after=}"


def test_absurd_learning_rate_is_detected_as_divergence(task: Task) -> None:
    """lr = 1e3 makes every run non-finite or > 100x its initial validation loss within
    the budget (the environment's divergence test), and never raises."""
    run = task.build(SEEDS)
    _set_defaults(run, task, learning_rate=1e3)
    initial = run.evaluate()
    detected = torch.zeros(run.n_runs, dtype=torch.bool)
    for _ in range(min(task.control_steps, DIVERGENCE_BUDGET)):
        stats = run.train(task.updates_per_step)
        detected |= ~torch.isfinite(stats.train_loss)
        if not detected.all():
            val = run.evaluate()
            detected |= ~torch.isfinite(val) | (val > 100 * initial)
        if detected.all():
            break
    assert detected.all(), f"not diverged: {run.evaluate()} vs initial {initial}"


def test_reset_runs_reproduces_a_fresh_build(task: Task) -> None:
    run = task.build(SEEDS)
    untouched = task.build(SEEDS)
    _set_defaults(run, task)
    _set_defaults(untouched, task)
    for _ in range(2):
        run.train(task.updates_per_step)
        untouched.train(task.updates_per_step)
    run.reset_runs([1], [999])
    fresh = task.build([999])
    torch.testing.assert_close(
        run.evaluate()[1], fresh.evaluate()[0], rtol=RTOL, atol=1e-6, equal_nan=True
    )
    hp, fresh_hp = run.get_hyperparameters(), fresh.get_hyperparameters()
    for name in run.hparam_names:
        torch.testing.assert_close(hp[name][1], fresh_hp[name][0])
    _set_defaults(run, task)  # shared settings keep rounding differences from compounding
    _set_defaults(untouched, task)
    _set_defaults(fresh, task)
    for step in range(2):
        stats = run.train(task.updates_per_step)
        _assert_stats_close(stats, fresh.train(task.updates_per_step), index_a=1)
        if step == 0:
            assert stats.grad_cosine[1] == 0.0
        reference = untouched.train(task.updates_per_step)
        for i in (0, 2):
            _assert_stats_close(stats, reference, index_a=i, index_b=i)


def test_twin_reproduces_the_batched_run(task: Task) -> None:
    """Families with a plain-PyTorch twin: same minibatches, same losses."""
    if not hasattr(task, "make_torch_run"):
        pytest.skip(f"{task.family} has no plain-PyTorch twin")
    run = task.build(SEEDS[:1])
    twin = task.make_torch_run(SEEDS[0])
    n = min(10, 2 * task.updates_per_step)
    batched = [float(run.train(1).train_loss[0]) for _ in range(n)]
    plain = []
    for _ in range(n):
        x, y = twin.next_batch()
        twin.optimizer.zero_grad()
        loss = twin.loss_fn(twin.model(x), y)
        loss.backward()
        twin.optimizer.step()
        plain.append(loss.item())
    finite = [math.isfinite(v) for v in plain]
    assert [math.isfinite(v) for v in batched] == finite
    # The first updates agree to rounding. A drawn start rate may be hot, and a hot run
    # amplifies the rounding of its kernels (batched `baddbmm` vs `nn.Linear`, which
    # differ by CPU): under ATEN_CPU_CAPABILITY=default one teacher run rising from 1.27
    # to 4.49 differed by 1.1e-3 at update 7. Other minibatches or another optimizer
    # would differ by far more than the later 1e-2.
    head = max(1, n // 3)
    pairs = [(b, p) for b, p, f in zip(batched, plain, finite) if f]
    assert [b for b, _ in pairs[:head]] == pytest.approx(
        [p for _, p in pairs[:head]], rel=1e-3, abs=1e-5
    )
    assert [b for b, _ in pairs] == pytest.approx([p for _, p in pairs], rel=1e-2, abs=1e-5)
