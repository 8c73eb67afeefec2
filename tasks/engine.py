"""The batched supervised training engine and its plain-PyTorch twin.

`SupervisedBatchedRun` trains B independent copies of one supervised task in
lockstep. All per-run state lives in tensors with a leading run axis: the
parameters in one flat ``[B, P]`` buffer, the optimizer state, the data and the
minibatch order. Run i depends only on the task and ``seeds[i]``; every random
draw comes from a generator seeded by ``derive_seed(seeds[i], stream)``:

- ``DATA_STREAM``: the data set / split / teacher (a `numpy.random.Generator`);
- ``INIT_STREAM``: the initial parameters (a `torch.Generator`);
- ``BATCH_STREAM``: the minibatch order, one ``randperm`` per epoch (a `torch.Generator`);
- ``HPARAM_STREAM``: the initial hyperparameters (a `numpy.random.Generator`).

`TorchRun` is one of those runs as an ordinary `nn.Module` plus a real
``torch.optim`` optimizer, fed exactly the same minibatches in the same order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpo_env.errors import unknown_name_error
from hpo_env.stats import StepStats
from tasks.nets import BatchedNet, init_flat_params, n_params, split_params
from tasks.optim import BatchedOptimizer, make_batched_optimizer, make_torch_optimizer

DATA_STREAM = 0
INIT_STREAM = 1
BATCH_STREAM = 2
HPARAM_STREAM = 3

SUPERVISED_HPARAMS = ("learning_rate", "momentum", "weight_decay")
"""What every supervised run accepts (``momentum`` is beta1 for Adam/AdamW)."""

LOSSES = ("cross_entropy", "mse")


def derive_seed(seed: int, stream: int) -> int:
    """An independent 32-bit seed for one random stream of the run ``seed``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"run seeds must be non-negative integers, got {seed!r}")
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1)[0])


@dataclasses.dataclass
class SupervisedData:
    """One run's data set as float32 / int64 tensors (no run axis)."""

    x_train: Tensor
    """[N, *input_shape] float32."""
    y_train: Tensor
    """[N] int64 class labels or [N, m] float32 targets."""
    x_val: Tensor
    """[N_val, *input_shape] float32."""
    y_val: Tensor
    """Like ``y_train`` with N_val rows."""


class SupervisedSpec(Protocol):
    """What the engine needs from a supervised task (see `tasks.supervised.SupervisedTask`)."""

    @property
    def net(self) -> BatchedNet: ...

    @property
    def loss(self) -> str: ...

    @property
    def optimizer(self) -> str: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def n_train(self) -> int: ...

    def make_data(self, seed: int) -> SupervisedData: ...

    def initial_hparams(self, seed: int) -> dict[str, float]: ...


def subsample_size(fraction: float, n: int) -> int:
    """Examples in a ``fraction`` of a set of ``n``: ``ceil(fraction * n)``, at least 1.

    Raises:
        ValueError: unless 0 < fraction <= 1.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a validation fraction must be in (0, 1], got {fraction=}")
    return max(1, min(n, math.ceil(fraction * n)))


def batched_loss(kind: str, output: Tensor, target: Tensor) -> Tensor:
    """Per-run mean loss [B] of ``output`` [B, n, out] against ``target`` [B, n(, m)]."""
    b, n = output.shape[0], output.shape[1]
    if kind == "cross_entropy":
        per_example = F.cross_entropy(
            output.reshape(b * n, -1), target.reshape(b * n), reduction="none"
        )
        return per_example.view(b, n).mean(1)
    if kind == "mse":
        return (output - target).square().mean(dim=(1, 2))
    raise ValueError(f"unknown loss {kind!r}, expected one of {list(LOSSES)}")


def torch_loss(kind: str, output: Tensor, target: Tensor) -> Tensor:
    """The single-run loss `batched_loss` computes, as a plain PyTorch loss."""
    if kind == "cross_entropy":
        return F.cross_entropy(output, target)
    if kind == "mse":
        return F.mse_loss(output, target)
    raise ValueError(f"unknown loss {kind!r}, expected one of {list(LOSSES)}")


class EpochSampler:
    """Minibatch order of one run: a fresh permutation per epoch (incomplete last batch
    dropped). Both engines draw from it, so their minibatch order is identical.

    Permutations are drawn ``epochs_per_draw`` at a time as the argsort of uniforms,
    so a batched run refills its B samplers rarely even on tiny data sets.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}] (the data size), got {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.n_batches = n // batch_size
        self.epochs_per_draw = max(1, 4096 // n)
        self.generator = torch.Generator().manual_seed(derive_seed(seed, BATCH_STREAM))
        self._perms = torch.empty(0, n, dtype=torch.int64)
        self._next = 0

    @property
    def epoch_len(self) -> int:
        return self.n_batches * self.batch_size

    def draw(self) -> Tensor:
        """The next ``epochs_per_draw`` epochs' indices, [epochs_per_draw, epoch_len] int64."""
        uniforms = torch.rand(self.epochs_per_draw, self.n, generator=self.generator)
        return uniforms.argsort(dim=1, stable=True)[:, : self.epoch_len]

    def epoch(self) -> Tensor:
        """The next epoch's indices, [epoch_len] int64."""
        if self._next == self._perms.shape[0]:
            self._perms = self.draw()
            self._next = 0
        perm = self._perms[self._next]
        self._next += 1
        return perm


class SupervisedBatchedRun:
    """B runs of one supervised task; implements `hpo_env.protocol.BatchedRun`.

    All state (parameters, optimizer, data, minibatch order) lives on ``device``;
    the random draws are made on the CPU and copied there, so a run is the same
    on every device up to float rounding. What the protocol returns (statistics,
    validation, hyperparameters) is on the CPU.

    Args:
        spec: The task (network, loss, optimizer, batch size, data and hparam draws).
        seeds: One non-negative integer per run.
        device: Where the runs compute (a resolved device, see `hpo_env.device`).
    """

    def __init__(
        self, spec: SupervisedSpec, seeds: Sequence[int], device: torch.device | str = "cpu"
    ):
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("a batched run needs at least one seed, got an empty sequence")
        self.spec = spec
        self.seeds = seeds
        self.device = torch.device(device)
        b = len(seeds)
        self._n_params = n_params(spec.net)
        self.theta = torch.zeros(b, self._n_params, device=self.device)
        self._optimizer: BatchedOptimizer = make_batched_optimizer(
            spec.optimizer, b, (self._n_params,), device=self.device
        )
        self._hparams = {
            name: torch.zeros(b, dtype=torch.float64, device=self.device)
            for name in SUPERVISED_HPARAMS
        }
        self._prev_grad = torch.zeros(b, self._n_params, device=self.device)
        # Its norm, kept from the interval that computed it (the same reduction, not redone).
        self._prev_grad_norm = torch.zeros(b, device=self.device)
        self._has_prev_grad = torch.zeros(b, dtype=torch.bool, device=self.device)
        # Where `train` copies the parameters at an interval's start (reused, not reallocated).
        self._theta_start = torch.empty_like(self.theta)
        self._samplers: list[EpochSampler] = [None] * b  # type: ignore[list-item]
        # Each run's drawn epochs, on the device: a new epoch is one gather for all
        # the runs that need one, and a run's sampler is called once per draw
        # (``epochs_per_draw`` epochs), not per epoch (1,024 calls per epoch dominated
        # a GPU step). `_perm_next[i]` is run i's next epoch in the bank.
        self._perm_bank = torch.empty(0, dtype=torch.int64, device=self.device)
        self._perm_next = np.zeros(b, dtype=np.int64)
        self._pos = np.zeros(b, dtype=np.int64)
        self._data_ready = False
        self._fill(range(b), seeds)

    # ------------------------------------------------------------------ setup
    def _fill(self, indices: Sequence[int], seeds: Sequence[int]) -> None:
        """(Re)initialise runs ``indices`` from ``seeds``: data, params, optimizer, hparams."""
        spec = self.spec
        datas = [spec.make_data(seed) for seed in seeds]
        if not self._data_ready:
            b = self.n_runs
            first = datas[0]
            dev = self.device
            self._n_train = first.x_train.shape[0]
            self._x_train = first.x_train.new_zeros(b, *first.x_train.shape, device=dev)
            self._y_train = first.y_train.new_zeros(b, *first.y_train.shape, device=dev)
            self._x_val = first.x_val.new_zeros(b, *first.x_val.shape, device=dev)
            self._y_val = first.y_val.new_zeros(b, *first.y_val.shape, device=dev)
            sampler = EpochSampler(self._n_train, spec.batch_size, 0)
            self._epoch_len = sampler.epoch_len
            self._perm_bank = torch.zeros(
                b, sampler.epochs_per_draw, self._epoch_len, dtype=torch.int64, device=dev
            )
            # Each run's current epoch, pre-shuffled: a minibatch is then a slice (no copy)
            # whenever the runs sit at the same position, which is the common case.
            self._x_epoch = first.x_train.new_zeros(
                b, self._epoch_len, *first.x_train.shape[1:], device=dev
            )
            self._y_epoch = first.y_train.new_zeros(
                b, self._epoch_len, *first.y_train.shape[1:], device=dev
            )
            self._row_offsets = (torch.arange(b, device=dev) * self._epoch_len).unsqueeze(1)
            self._batch_arange = torch.arange(spec.batch_size, device=dev)
            self._data_ready = True
        # Built on the CPU and stored with one copy per tensor: a store per run was
        # ~10 small device copies each, 1,024 times over at every round on a GPU.
        idx = list(indices)
        index = torch.as_tensor(idx, dtype=torch.int64, device=self.device)
        for name, store in (
            ("x_train", self._x_train),
            ("y_train", self._y_train),
            ("x_val", self._x_val),
            ("y_val", self._y_val),
        ):
            for seed, data in zip(seeds, datas, strict=True):
                value = getattr(data, name)
                if value.shape != store.shape[1:]:
                    raise ValueError(
                        f"{name} of seed {seed} has shape {tuple(value.shape)}, expected "
                        f"{tuple(store.shape[1:])} like the other runs of this task"
                    )
            values = torch.stack([getattr(data, name) for data in datas])
            store[index] = values.to(self.device, store.dtype)
        inits = [
            init_flat_params(spec.net, torch.Generator().manual_seed(derive_seed(s, INIT_STREAM)))
            for s in seeds
        ]
        self.theta[index] = torch.stack(inits).to(self.device)
        initial = [spec.initial_hparams(seed) for seed in seeds]
        for name, store in self._hparams.items():
            if name in initial[0]:
                values = torch.tensor([h[name] for h in initial], dtype=store.dtype)
                store[index] = values.to(self.device)
        for i, seed in zip(indices, seeds, strict=True):
            self._samplers[i] = EpochSampler(self._n_train, spec.batch_size, seed)
            self.seeds[i] = int(seed)
        self._perm_next[idx] = self._perm_bank.shape[1]  # nothing drawn yet
        self._shuffle_epochs(idx)
        self._optimizer.reset_slots(idx)
        self._prev_grad[idx] = 0.0
        self._prev_grad_norm[idx] = 0.0
        self._has_prev_grad[idx] = False

    def _shuffle_epochs(self, indices: list[int]) -> None:
        """Start a new epoch for runs ``indices``: one gather for all of them."""
        runs = np.asarray(indices, dtype=np.int64)
        spent = runs[self._perm_next[runs] >= self._perm_bank.shape[1]]
        if spent.size:
            drawn = torch.stack([self._samplers[i].draw() for i in spent.tolist()])
            self._perm_bank[torch.from_numpy(spent).to(self.device)] = drawn.to(self.device)
            self._perm_next[spent] = 0
        index = torch.from_numpy(runs).to(self.device)
        perms = self._perm_bank[index, torch.from_numpy(self._perm_next[runs]).to(self.device)]
        self._perm_next[runs] += 1
        rows = (perms + (index * self._n_train).unsqueeze(1)).reshape(-1)
        x = self._x_train.view(-1, *self._x_train.shape[2:]).index_select(0, rows)
        y = self._y_train.view(-1, *self._y_train.shape[2:]).index_select(0, rows)
        x = x.view(len(indices), self._epoch_len, *x.shape[1:])
        y = y.view(len(indices), self._epoch_len, *y.shape[1:])
        if indices == list(range(self.n_runs)):
            self._x_epoch, self._y_epoch = x, y
        else:
            self._x_epoch[index] = x
            self._y_epoch[index] = y
        self._pos[indices] = 0

    # --------------------------------------------------------------- protocol
    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    @property
    def hparam_names(self) -> tuple[str, ...]:
        return SUPERVISED_HPARAMS

    def get_hyperparameters(self) -> dict[str, Tensor]:
        return {name: value.float().cpu() for name, value in self._hparams.items()}

    def set_hyperparameters(self, values: Mapping[str, Tensor]) -> None:
        for name, value in values.items():
            if name not in self._hparams:
                raise unknown_name_error("hyperparameter", name, SUPERVISED_HPARAMS)
            tensor = torch.as_tensor(value, dtype=torch.float64).reshape(-1).to(self.device)
            if tensor.shape[0] not in (1, self.n_runs):
                raise ValueError(
                    f"{name} must have shape [{self.n_runs}] (one value per run), "
                    f"got {tuple(tensor.shape)}"
                )
            self._hparams[name] = tensor.expand(self.n_runs).clone()

    def _next_batch(self) -> tuple[Tensor, Tensor]:
        bs = self.spec.batch_size
        done = np.flatnonzero(self._pos + bs > self._epoch_len)
        if done.size:
            self._shuffle_epochs(done.tolist())
        first = int(self._pos[0])
        if (self._pos == first).all():
            x = self._x_epoch[:, first : first + bs]
            y = self._y_epoch[:, first : first + bs]
        else:  # runs reset mid-epoch sit at different positions
            pos = torch.from_numpy(self._pos).to(self.device)
            rows = pos.unsqueeze(1) + self._batch_arange + self._row_offsets
            rows = rows.reshape(-1)
            b = self.n_runs
            x = self._x_epoch.view(-1, *self._x_epoch.shape[2:]).index_select(0, rows)
            y = self._y_epoch.view(-1, *self._y_epoch.shape[2:]).index_select(0, rows)
            x = x.view(b, bs, *x.shape[1:])
            y = y.view(b, bs, *y.shape[1:])
        self._pos += bs
        return x, y

    def _loss_and_grad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        theta = self.theta.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.spec.net.forward(split_params(self.spec.net, theta), x)
            loss = batched_loss(self.spec.loss, out, y)
            # Runs share no op before this sum, so d(sum)/d(theta_i) = d(loss_i)/d(theta_i).
            (grad,) = torch.autograd.grad(loss.sum(), theta)
        return loss.detach(), grad

    def update(self) -> Tensor:
        """One inner update of every run with the current hyperparameters and no statistics
        (bare training, for benchmarks; `train` is the statistics-keeping API).

        Returns:
            The minibatch losses before the update, float32 [B].
        """
        return self._update()[0]

    def _update(self) -> tuple[Tensor, Tensor]:
        hp = self._hparams
        x, y = self._next_batch()
        loss, grad = self._loss_and_grad(x, y)
        self._optimizer.step(
            self.theta, grad, hp["learning_rate"], hp["momentum"], hp["weight_decay"]
        )
        return loss, grad

    def train(self, n_updates: int) -> StepStats:
        if n_updates < 1:
            raise ValueError(f"n_updates must be >= 1, got {n_updates}")
        theta_start = self._theta_start.copy_(self.theta)
        # Only the interval's last gradient is kept (the statistics read no other).
        loss_list = [self._update()[0] for _ in range(n_updates - 1)]
        last_loss, grad = self._update()
        losses = torch.stack([*loss_list, last_loss])
        grad_norm = grad.norm(dim=1)
        prev_norm = self._prev_grad_norm
        cosine = (grad * self._prev_grad).sum(1) / (grad_norm * prev_norm).clamp_min(1e-12)
        cosine = torch.where(self._has_prev_grad, cosine, torch.zeros_like(cosine))
        self._prev_grad, self._prev_grad_norm = grad, grad_norm
        self._has_prev_grad[:] = True
        start_norm = theta_start.norm(dim=1)
        # theta - theta_start, written over the start copy (no [B, P] temporary).
        step = torch.sub(self.theta, theta_start, out=theta_start)
        update_ratio = step.norm(dim=1) / (start_norm + 1e-12)
        # One stacked copy to the CPU (one device sync) for all [B] statistics.
        summary = torch.stack(
            (
                losses.mean(0),
                losses.std(0, correction=0),
                losses[0],
                grad_norm,
                cosine,
                update_ratio,
            )
        ).cpu()
        return StepStats(
            train_loss=summary[0],
            train_loss_std=summary[1],
            train_loss_first=summary[2],
            grad_norm=summary[3],
            grad_cosine=summary[4],
            update_ratio=summary[5],
            n_updates=n_updates,
            hparams=self.get_hyperparameters(),
        )

    def evaluate(self, fraction: float = 1.0) -> Tensor:
        """Validation loss of every run, float32 [B] on the CPU.

        Args:
            fraction: Share of each run's validation set to use: its first
                ``ceil(fraction * N_val)`` examples, a fixed random subsample (the set
                is a random draw per run), the same at every call. 1.0 is the full set.
        """
        return self.evaluate_prefixes((fraction,))[0]

    @torch.no_grad()
    def evaluate_prefixes(self, fractions: Sequence[float]) -> Tensor:
        """`evaluate` at several ``fractions`` from one forward pass, float32 [F, B] on the CPU.

        The subsamples are nested prefixes of the validation set, so the largest
        one's forward pass serves them all (e.g. the full set the controller sees
        and the subsample the reward compares with, at the cost of the full set).
        """
        n_val = self._x_val.shape[1]
        sizes = [subsample_size(f, n_val) for f in fractions]
        largest = max(sizes)
        params = split_params(self.spec.net, self.theta)
        out = self.spec.net.forward(params, self._x_val[:, :largest])
        losses = [
            batched_loss(self.spec.loss, out[:, :n], self._y_val[:, :n]).float() for n in sizes
        ]
        return torch.stack(losses).cpu()

    def reset_runs(self, indices: Sequence[int], seeds: Sequence[int]) -> None:
        indices = [int(i) for i in indices]
        if len(indices) != len(seeds):
            raise ValueError(
                f"reset_runs needs one seed per index, got {len(indices)} indices and {len(seeds)} seeds"
            )
        bad = [i for i in indices if not 0 <= i < self.n_runs]
        if bad:
            raise ValueError(f"run indices must be in [0, {self.n_runs}), got {bad}")
        if indices:
            self._fill(indices, [int(s) for s in seeds])


class TorchRun:
    """One run of a supervised task as plain PyTorch: `model`, a real `torch.optim`
    `optimizer` with the run's initial hyperparameters, and `next_batch()` yielding
    the minibatches the batched engine's run with the same seed uses, in order.

    Example:
        >>> run = task.make_torch_run(seed=0)  # doctest: +SKIP
        >>> x, y = run.next_batch()  # doctest: +SKIP
        >>> run.optimizer.zero_grad(); run.loss_fn(run.model(x), y).backward(); run.optimizer.step()  # doctest: +SKIP
    """

    def __init__(self, spec: SupervisedSpec, seed: int):
        self.spec = spec
        self.seed = int(seed)
        self.data = spec.make_data(self.seed)
        self.model: nn.Module = spec.net.torch_module()
        gen = torch.Generator().manual_seed(derive_seed(self.seed, INIT_STREAM))
        flat = init_flat_params(spec.net, gen)
        if flat.numel() != sum(p.numel() for p in self.model.parameters()):
            raise ValueError("the net spec's parameter count differs from its torch module's")
        nn.utils.vector_to_parameters(flat, self.model.parameters())
        self.hparams = spec.initial_hparams(self.seed)
        self.optimizer: torch.optim.Optimizer = make_torch_optimizer(
            spec.optimizer,
            self.model.parameters(),
            learning_rate=self.hparams["learning_rate"],
            momentum=self.hparams["momentum"],
            weight_decay=self.hparams["weight_decay"],
        )
        self._sampler = EpochSampler(self.data.x_train.shape[0], spec.batch_size, self.seed)
        self._epoch = self._sampler.epoch()
        self._pos = 0

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """The next training minibatch ``(x, y)``."""
        bs = self.spec.batch_size
        if self._pos + bs > self._epoch.shape[0]:
            self._epoch = self._sampler.epoch()
            self._pos = 0
        idx = self._epoch[self._pos : self._pos + bs]
        self._pos += bs
        return self.data.x_train[idx], self.data.y_train[idx]

    def loss_fn(self, output: Tensor, y: Tensor) -> Tensor:
        """The training / validation objective (mean over the minibatch)."""
        return torch_loss(self.spec.loss, output, y)

    @torch.no_grad()
    def val_loss(self) -> float:
        """Validation loss on the full validation set (what `evaluate()` reports)."""
        return float(self.loss_fn(self.model(self.data.x_val), self.data.y_val))
