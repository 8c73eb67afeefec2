"""Any `nn.Module` as B batched training runs, through `torch.func`.

The model stays an ordinary module a user could have written. B copies are
initialised from their own seeds (the module's own initialisation under
``torch.manual_seed``), stacked with `torch.func.stack_module_state`, and
trained together: one "meta" copy is called with `torch.func.functional_call`
under `torch.func.vmap`, so every run's forward pass is one batched tensor
program, and one backward pass of the summed per-run losses gives each run's
gradient (the runs share no operation before that sum).

`FunctionalBatchedRun` reuses `tasks.engine.SupervisedBatchedRun` for
everything that is not the network: the flat ``[B, P]`` parameter buffer, the
per-run data and minibatch order (`tasks.engine.EpochSampler`), the project's
batched optimizers (`tasks.optim`, equal to ``torch.optim``), the interval
statistics, validation on nested prefixes and `reset_runs`. It adds per-run
gradient clipping (``torch.nn.utils.clip_grad_norm_`` run by run), losses over
sequences (next-token cross-entropy at every position) and a loss scale.

Normalisation: modules with buffers (BatchNorm's running statistics) are
refused. Under ``vmap`` a buffer is either shared by the B runs (wrong) or must
be carried as extra per-run state that ``functional_call`` writes back; users'
small models train as well with GroupNorm or LayerNorm, which have no running
statistics and are per-example, so the families here use those.

Divergence: a run whose loss or gradient becomes non-finite keeps training on
NaN numbers without raising and without touching any other run (every op is
per-run); the environment sees the non-finite statistics and ends the episode.

`FunctionalTorchRun` is one of those runs as the plain PyTorch loop: the same
module with the same initial parameters, a real ``torch.optim`` optimizer, the
same minibatches in the same order, clipping by ``clip_grad_norm_``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from hpo_env.errors import ConfigError
from tasks.engine import (
    INIT_STREAM,
    SupervisedBatchedRun,
    SupervisedSpec,
    TorchRun,
    derive_seed,
    subsample_size,
)
from tasks.nets import split_params
from tasks.optim import make_torch_optimizer

CLIP_EPS = 1e-6
"""``torch.nn.utils.clip_grad_norm_``'s epsilon: ``coef = max_norm / (norm + 1e-6)``."""


class ModelConfig(Protocol):
    """A frozen, hashable, picklable description of a model that builds an `nn.Module`."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (no batch axis)."""
        ...

    @property
    def output_dim(self) -> int:
        """Size of the last output axis (classes, vocabulary or regression targets)."""
        ...

    def build(self) -> nn.Module:
        """A fresh module, initialised from the global torch RNG (as users build models)."""
        ...

    def describe(self) -> str:
        """Short text for task names, e.g. ``"transformer(d=32,L=2)"``."""
        ...


def build_seeded(config: ModelConfig, seed: int) -> nn.Module:
    """``config.build()`` with the global torch RNG seeded by ``seed`` (and restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return config.build()


@functools.lru_cache(maxsize=64)
def meta_module(config: ModelConfig) -> nn.Module:
    """The one copy ``functional_call`` runs (its own parameters are never used).

    Raises:
        ConfigError: if the module has buffers (e.g. BatchNorm's running statistics).
    """
    module = build_seeded(config, 0)
    buffers = [name for name, _ in module.named_buffers()]
    if buffers:
        raise ConfigError(
            f"{config.describe()} has buffers {buffers}: modules with running statistics "
            "(BatchNorm) are not batched under vmap; use GroupNorm or LayerNorm instead"
        )
    return module


class ModuleNet:
    """A `ModelConfig` seen through `tasks.nets.BatchedNet`, so the engine can train it.

    ``forward(params, x)`` is ``vmap(functional_call(meta, params_i, x_i))`` over the
    run axis. Initial parameters come from `init_flat` (the module's own
    initialisation), not from ``fan_ins`` (kept only to satisfy the protocol).
    """

    def __init__(self, config: ModelConfig):
        self.config = config
        meta = meta_module(config)  # type: ignore[arg-type]  # frozen dataclass: hashable
        self._names = tuple(name for name, _ in meta.named_parameters())
        self._shapes = [tuple(p.shape) for _, p in meta.named_parameters()]

        def one_run(params: tuple[Tensor, ...], x: Tensor) -> Tensor:
            return functional_call(meta, dict(zip(self._names, params, strict=True)), (x,))

        self._batched = vmap(one_run)

    def __reduce__(self) -> tuple[type, tuple[ModelConfig]]:
        return (ModuleNet, (self.config,))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.config.input_shape)

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def param_shapes(self) -> list[tuple[int, ...]]:
        return list(self._shapes)

    def fan_ins(self) -> list[int]:
        return [1] * len(self._shapes)

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        """``params[j]`` is ``[B, *shape_j]``, ``x`` is ``[B, n, *input_shape]``."""
        return self._batched(tuple(params), x)

    def torch_module(self) -> nn.Module:
        return self.config.build()

    def init_flat(self, seeds: Sequence[int]) -> Tensor:
        """[len(seeds), P] initial parameters: run i's module built under
        ``derive_seed(seeds[i], INIT_STREAM)``, stacked with ``stack_module_state``."""
        modules = [build_seeded(self.config, derive_seed(s, INIT_STREAM)) for s in seeds]
        stacked, _ = stack_module_state(modules)
        flat = [stacked[name].detach().reshape(len(seeds), -1) for name in self._names]
        return torch.cat(flat, 1)


def run_losses(kind: str, output: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """Per-run mean loss [B] of ``output`` [B, n, ..., C] against ``target``.

    ``cross_entropy``: ``target`` is [B, n, ...] class indices and the mean runs over
    every example and position (next-character prediction at every step);
    ``mse``: ``target`` has ``output``'s shape. Multiplied by ``scale``.
    """
    b = output.shape[0]
    if kind == "cross_entropy":
        per = F.cross_entropy(
            output.reshape(-1, output.shape[-1]), target.reshape(-1), reduction="none"
        )
        loss = per.view(b, -1).mean(1)
    elif kind == "mse":
        loss = (output - target).square().reshape(b, -1).mean(1)
    else:
        raise ConfigError(f"unknown loss {kind!r}, expected 'cross_entropy' or 'mse'")
    return loss * scale if scale != 1.0 else loss


def plain_loss(kind: str, output: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    """The one-run loss `run_losses` computes, as the plain PyTorch call a user writes."""
    if kind == "cross_entropy":
        loss = F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
    elif kind == "mse":
        loss = F.mse_loss(output, target)
    else:
        raise ConfigError(f"unknown loss {kind!r}, expected 'cross_entropy' or 'mse'")
    return loss * scale if scale != 1.0 else loss


class FunctionalSpec(SupervisedSpec, Protocol):
    """What `FunctionalBatchedRun` needs beyond `tasks.engine.SupervisedSpec`: a module
    factory for ``net``, a loss scale and gradient clipping."""

    @property
    def net(self) -> ModuleNet: ...

    @property
    def loss_scale(self) -> float: ...

    @property
    def max_grad_norm(self) -> float | None: ...


class FunctionalBatchedRun(SupervisedBatchedRun):
    """B runs of an `nn.Module` task through ``torch.func``; a `hpo_env.protocol.BatchedRun`.

    Args:
        spec: The task (model config as a `ModuleNet`, loss, optimizer, data, clipping).
        seeds: One non-negative integer per run.
        device: Where the runs compute.
    """

    spec: FunctionalSpec

    def __init__(
        self, spec: FunctionalSpec, seeds: Sequence[int], device: torch.device | str = "cpu"
    ):
        super().__init__(spec, seeds, device)

    def _fill(self, indices: Sequence[int], seeds: Sequence[int]) -> None:
        super()._fill(indices, seeds)
        # The engine drew uniform placeholders; every module initialises itself.
        index = torch.as_tensor(list(indices), dtype=torch.int64, device=self.device)
        self.theta[index] = self.spec.net.init_flat([int(s) for s in seeds]).to(self.device)

    def _loss_and_grad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        spec = self.spec
        theta = self.theta.detach().requires_grad_(True)
        with torch.enable_grad():
            out = spec.net.forward(split_params(spec.net, theta), x)
            loss = run_losses(spec.loss, out, y, spec.loss_scale)
            (grad,) = torch.autograd.grad(loss.sum(), theta)
        return loss.detach(), grad

    def _update(self) -> tuple[Tensor, Tensor]:
        hp = self._hparams
        x, y = self._next_batch()
        loss, grad = self._loss_and_grad(x, y)
        applied = grad
        max_norm = self.spec.max_grad_norm
        if max_norm is not None:
            norm = grad.norm(dim=1, keepdim=True)
            # torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + eps), clamped to 1.
            applied = grad * (max_norm / (norm + CLIP_EPS)).clamp(max=1.0)
        self._optimizer.step(
            self.theta, applied, hp["learning_rate"], hp["momentum"], hp["weight_decay"]
        )
        # The statistics read the gradient the optimizer receives, as a deployed scheduler
        # does (users clip before ``optimizer.step()``, where the scheduler reads it).
        return loss, applied

    @torch.no_grad()
    def evaluate_prefixes(self, fractions: Sequence[float]) -> Tensor:
        n_val = self._x_val.shape[1]
        sizes = [subsample_size(f, n_val) for f in fractions]
        spec = self.spec
        out = spec.net.forward(split_params(spec.net, self.theta), self._x_val[:, : max(sizes)])
        losses = [
            run_losses(spec.loss, out[:, :n], self._y_val[:, :n], spec.loss_scale).float()
            for n in sizes
        ]
        return torch.stack(losses).cpu()


class FunctionalTorchRun(TorchRun):
    """One run as the plain PyTorch loop a user writes: the task's module with run
    ``seed``'s initial parameters, a ``torch.optim`` optimizer and `next_batch()`
    yielding the batched run's minibatches in order; clipping, where the task
    clips, is ``clip_grad_norm_`` in a step pre-hook of the optimizer.
    """

    spec: FunctionalSpec

    def __init__(self, spec: FunctionalSpec, seed: int):
        super().__init__(spec, seed)
        self.model = build_seeded(spec.net.config, derive_seed(self.seed, INIT_STREAM))
        self.optimizer = make_torch_optimizer(
            spec.optimizer,
            self.model.parameters(),
            learning_rate=self.hparams["learning_rate"],
            momentum=self.hparams["momentum"],
            weight_decay=self.hparams["weight_decay"],
        )
        max_norm = spec.max_grad_norm
        if max_norm is not None:
            params = list(self.model.parameters())

            def clip(*_: object) -> None:
                nn.utils.clip_grad_norm_(params, max_norm)

            self.optimizer.register_step_pre_hook(clip)

    def loss_fn(self, output: Tensor, y: Tensor) -> Tensor:
        return plain_loss(self.spec.loss, output, y, self.spec.loss_scale)


def check_finite_positive(owner: str, name: str, value: float) -> None:
    """Raise a `ConfigError` unless ``value`` is finite and > 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{owner}.{name} must be a finite number > 0, got {name}={value!r}")
