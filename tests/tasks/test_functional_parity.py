"""B runs batched through torch.func equal B plain PyTorch loops (torch.optim, same seeds,
same minibatches), per optimizer, with a different learning rate per run."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from hpo_env.errors import ConfigError
from tasks.functional.data import CharData, ImageData
from tasks.functional.models import Cnn2dConfig, RecurrentConfig, TransformerConfig
from tasks.functional.run import ModuleNet
from tasks.functional.task import FunctionalTask

SEEDS = (11, 22, 33)
LR_FACTORS = (0.3, 1.0, 3.0)
N_UPDATES = 6
RTOL = 1e-4
DEFAULT_LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}
WEIGHT_DECAY = {"sgd": 1e-3, "adam": 1e-3, "adamw": 1e-2, "rmsprop": 1e-3}
MOMENTUM = {"sgd": 0.9, "adam": 0.9, "adamw": 0.8, "rmsprop": 0.5}


def _char(seq_len: int = 8) -> CharData:
    return CharData("stdlib_source", seq_len=seq_len, n_train=48, n_val=16)


MODELS = {
    "transformer": (TransformerConfig(vocab=96, seq_len=8, d_model=16, n_heads=2, n_layers=2), _char(), None),
    "gru": (RecurrentConfig("gru", vocab=96, seq_len=8, hidden=16), _char(), 1.0),
    "lstm": (RecurrentConfig("lstm", vocab=96, seq_len=8, hidden=16), _char(), None),
    "cnn2d": (Cnn2dConfig(image_size=8, n_classes=10, channels=(4,), groups=2), ImageData("digits", n_samples=0), None),
}  # fmt: skip


def _task(model: str, optimizer: str) -> FunctionalTask:
    config, data, clip = MODELS[model]
    return FunctionalTask(
        family="parity",
        data=data,
        model=config,
        optimizer=optimizer,
        batch_size=4,
        default_learning_rate=DEFAULT_LR[optimizer],
        default_momentum=MOMENTUM[optimizer],
        default_weight_decay=WEIGHT_DECAY[optimizer],
        loss_scale=1.5,
        max_grad_norm=clip,
    )


def _plain_val_losses(task: FunctionalTask, lrs: list[float]) -> list[float]:
    losses = []
    for seed, lr in zip(SEEDS, lrs, strict=True):
        twin = task.make_torch_run(seed)
        for group in twin.optimizer.param_groups:
            group["lr"] = lr
        for _ in range(N_UPDATES):
            x, y = twin.next_batch()
            twin.optimizer.zero_grad()
            twin.loss_fn(twin.model(x), y).backward()
            twin.optimizer.step()
        losses.append(twin.val_loss())
    return losses


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("model", ["transformer", "gru", "lstm", "cnn2d"])
def test_batched_runs_equal_plain_loops(model: str, optimizer: str) -> None:
    task = _task(model, optimizer)
    lrs = [task.default_learning_rate * f for f in LR_FACTORS]
    run = task.build(list(SEEDS))
    run.set_hyperparameters({"learning_rate": torch.tensor(lrs)})
    before = run.evaluate()
    run.train(N_UPDATES)
    batched = run.evaluate()
    plain = torch.tensor(_plain_val_losses(task, lrs))
    torch.testing.assert_close(batched, plain, rtol=RTOL, atol=0.0)
    assert (batched != before).all()  # the runs did train
    assert len(set(batched.tolist())) == len(SEEDS)  # and differ


def test_clipping_is_clip_grad_norm_per_run() -> None:
    """A tiny max_grad_norm binds on every step; batched equals the hooked plain loop."""
    task = dataclasses.replace(_task("gru", "sgd"), max_grad_norm=0.01)
    lrs = [task.default_learning_rate * f for f in LR_FACTORS]
    run = task.build(list(SEEDS))
    run.set_hyperparameters({"learning_rate": torch.tensor(lrs)})
    stats = run.train(N_UPDATES)
    # The statistics read the clipped gradient (what a deployed scheduler sees at step()).
    assert (stats.grad_norm <= 0.01 * (1 + 1e-4)).all()
    plain = torch.tensor(_plain_val_losses(task, lrs))
    torch.testing.assert_close(run.evaluate(), plain, rtol=RTOL, atol=0.0)
    unclipped = dataclasses.replace(task, max_grad_norm=None).build(list(SEEDS))
    unclipped.set_hyperparameters({"learning_rate": torch.tensor(lrs)})
    unclipped.train(N_UPDATES)
    assert not torch.allclose(unclipped.evaluate(), run.evaluate())


def test_a_diverged_run_leaves_the_others_alone() -> None:
    task = _task("transformer", "sgd")
    run = task.build(list(SEEDS))
    single = task.build([SEEDS[1]])
    run.set_hyperparameters({"learning_rate": torch.tensor([1e6, 0.05, 0.05])})
    single.set_hyperparameters({"learning_rate": torch.tensor([0.05])})
    for _ in range(3):
        stats = run.train(2)
        reference = single.train(2)
    assert not torch.isfinite(stats.train_loss[0]) or stats.train_loss[0] > 1e3
    torch.testing.assert_close(stats.train_loss[1], reference.train_loss[0], rtol=RTOL, atol=1e-6)
    torch.testing.assert_close(run.evaluate()[1], single.evaluate()[0], rtol=RTOL, atol=1e-6)


@dataclasses.dataclass(frozen=True)
class _BatchNormConfig:
    input_shape: tuple[int, ...] = (4,)
    output_dim: int = 2

    def build(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))

    def describe(self) -> str:
        return "batchnorm_mlp"


def test_modules_with_running_statistics_are_refused() -> None:
    with pytest.raises(ConfigError, match="GroupNorm or LayerNorm"):
        ModuleNet(_BatchNormConfig())


def test_initialisation_is_the_modules_own() -> None:
    """Run i starts from the module built under its seed (LayerNorm weights 1, biases 0)."""
    task = _task("transformer", "adam")
    run = task.build(list(SEEDS))
    twin = task.make_torch_run(SEEDS[2])
    flat = torch.cat([p.detach().reshape(-1) for p in twin.model.parameters()])
    torch.testing.assert_close(run.theta[2], flat, rtol=0, atol=0)
    assert not torch.equal(run.theta[0], run.theta[2])
    ln = dict(twin.model.named_parameters())["ln.weight"]
    assert torch.equal(ln, torch.ones_like(ln))
