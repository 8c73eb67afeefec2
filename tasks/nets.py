"""Batched base networks: B independent copies of one architecture as batched tensor ops.

Each architecture spec is a small frozen dataclass that knows

- its parameter shapes, in exactly the order ``torch_module().named_parameters()``
  yields them (so a run's flat parameter vector loads straight into the plain
  PyTorch twin with `torch.nn.utils.vector_to_parameters`);
- a batched forward ``forward(params, x)`` where every parameter carries a
  leading run axis ``[B, ...]`` and ``x`` is ``[B, n, *input_shape]``;
- PyTorch's default initialisation bounds (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
  for weights and biases of `nn.Linear` / `nn.Conv2d`).

Why hand-written batched ops rather than ``torch.func.vmap(grad(functional_call))``:
on a 2-core CPU a ``baddbmm`` forward with autograd on the summed per-run losses
measured ~1.4x faster than vmap for the same MLP (B=64), and the per-run
gradients stay independent because every op here is per-run (no reduction
across the run axis before the final sum).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sigmoid_tanh(x: Tensor) -> Tensor:
    """tanh(x) as ``2 * sigmoid(2x) - 1`` (within 2e-7 of ``torch.tanh`` in float32).

    Why not ``torch.tanh``: torch's CPU wheel computes ``tanh`` through MKL's vector
    math, whose path is chosen by CPU vendor (on an AMD EPYC the generic one, 4x slower
    than ATen's own ``sigmoid`` in the forward pass), so its bits depend on the vendor.
    Not a speed-up end to end: with the extra elementwise ops, ``--preset default``'s
    decisions/s measured ~8% lower on that AMD CPU (README, "Speed")."""
    return torch.sigmoid(x * 2.0) * 2.0 - 1.0


class SigmoidTanh(nn.Module):
    """`sigmoid_tanh` as a module: the plain twin of a batched tanh network."""

    def forward(self, x: Tensor) -> Tensor:
        return sigmoid_tanh(x)


ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[], nn.Module]]] = {
    "relu": (F.relu, nn.ReLU),
    "tanh": (sigmoid_tanh, SigmoidTanh),
    "gelu": (F.gelu, nn.GELU),
    "elu": (F.elu, nn.ELU),
    "silu": (F.silu, nn.SiLU),
}
"""Activation name -> (batched function, equivalent `nn.Module` class for the twin)."""


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}, expected one of {sorted(ACTIVATIONS)}")


class BatchedNet(Protocol):
    """What the engine needs from an architecture spec."""

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def output_dim(self) -> int: ...

    def param_shapes(self) -> list[tuple[int, ...]]:
        """Per-run parameter shapes, in the twin module's ``parameters()`` order."""
        ...

    def fan_ins(self) -> list[int]:
        """Fan-in of the layer each parameter belongs to (for the default init)."""
        ...

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        """``params[j]`` is ``[B, *param_shapes()[j]]``; ``x`` is ``[B, n, *input_shape]``;
        returns ``[B, n, output_dim]``."""
        ...

    def torch_module(self) -> nn.Module:
        """A plain PyTorch module with the same parameters, for one run."""
        ...


def n_params(net: BatchedNet) -> int:
    """Number of parameters of one run."""
    return sum(math.prod(s) for s in net.param_shapes())


def macs_per_example(net: MlpSpec | CnnSpec) -> int:
    """Multiply-accumulates of one forward pass of one example (the cost model that keeps
    sampled tasks within a compute budget)."""
    if isinstance(net, MlpSpec):
        return sum(a * b for a, b in itertools.pairwise(net._dims()))
    macs, side, c_in = 0, net.image_size, net.in_channels
    for c_out in net.channels:
        macs += side * side * 9 * c_in * c_out
        side, c_in = side // 2, c_out
    return macs + sum(a * b for a, b in itertools.pairwise(net._head_dims()))


def init_bounds(net: BatchedNet) -> Tensor:
    """Flat [P] vector of PyTorch-default uniform init bounds ``1/sqrt(fan_in)``."""
    parts = [
        torch.full((math.prod(shape),), 1.0 / math.sqrt(fan_in))
        for shape, fan_in in zip(net.param_shapes(), net.fan_ins(), strict=True)
    ]
    return torch.cat(parts)


def init_flat_params(net: BatchedNet, generator: torch.Generator) -> Tensor:
    """One run's initial parameters as a flat float32 [P] vector drawn from ``generator``."""
    bounds = init_bounds(net)
    u = torch.rand(bounds.shape[0], generator=generator)
    return (2.0 * u - 1.0) * bounds


def split_params(net: BatchedNet, flat: Tensor) -> list[Tensor]:
    """Views of a [B, P] flat buffer as per-parameter ``[B, *shape]`` tensors.

    Uses `Tensor.split` so autograd's backward is a single concatenation.
    """
    shapes = net.param_shapes()
    sizes = [math.prod(s) for s in shapes]
    b = flat.shape[0]
    return [
        chunk.view(b, *shape) for chunk, shape in zip(flat.split(sizes, dim=1), shapes, strict=True)
    ]


def _batched_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    # x [B, n, in], weight [B, out, in], bias [B, out] -> [B, n, out]
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _batched_mlp(params: Sequence[Tensor], h: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
    """Batched linear layers from (weight, bias) pairs, ``act`` between them (not after the last)."""
    n_layers = len(params) // 2
    for layer in range(n_layers):
        h = _batched_linear(h, params[2 * layer], params[2 * layer + 1])
        if layer < n_layers - 1:
            h = act(h)
    return h


@dataclasses.dataclass(frozen=True)
class MlpSpec:
    """A multilayer perceptron: ``Linear -> act`` per hidden layer, then a linear head."""

    input_dim: int
    """Features per example."""
    hidden: tuple[int, ...]
    """Width of each hidden layer; ``()`` is a linear model."""
    output_dim: int
    """Classes (logits) or regression targets."""
    activation: str = "relu"
    """One of `ACTIVATIONS`."""

    def __post_init__(self) -> None:
        _check_activation(self.activation)
        for name, value in (("input_dim", self.input_dim), ("output_dim", self.output_dim)):
            if value < 1:
                raise ValueError(f"MlpSpec.{name} must be >= 1, got {value}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"MlpSpec.hidden widths must be >= 1, got {self.hidden}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.input_dim,)

    def _dims(self) -> list[int]:
        return [self.input_dim, *self.hidden, self.output_dim]

    def param_shapes(self) -> list[tuple[int, ...]]:
        dims = self._dims()
        shapes: list[tuple[int, ...]] = []
        for fan_in, fan_out in itertools.pairwise(dims):
            shapes += [(fan_out, fan_in), (fan_out,)]
        return shapes

    def fan_ins(self) -> list[int]:
        return [d for d in self._dims()[:-1] for _ in range(2)]

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        return _batched_mlp(params, x, ACTIVATIONS[self.activation][0])

    def torch_module(self) -> nn.Module:
        act_cls = ACTIVATIONS[self.activation][1]
        dims = self._dims()
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(dims) - 2:
                layers.append(act_cls())
        return nn.Sequential(*layers)


@dataclasses.dataclass(frozen=True)
class CnnSpec:
    """A small CNN for square images: per conv layer ``Conv3x3(pad 1) -> act -> AvgPool2``,
    then flatten and a linear head (optionally through one hidden layer)."""

    image_size: int
    """Height = width of the input images (must be divisible by ``2 ** len(channels)``)."""
    in_channels: int
    """Input channels."""
    channels: tuple[int, ...]
    """Output channels of each conv layer."""
    output_dim: int
    """Classes."""
    hidden: int = 0
    """Width of a hidden linear layer after the convolutions; 0 for none."""
    activation: str = "relu"
    """One of `ACTIVATIONS`."""

    def __post_init__(self) -> None:
        _check_activation(self.activation)
        if not self.channels:
            raise ValueError("CnnSpec.channels needs at least one conv layer, got ()")
        if self.image_size % (2 ** len(self.channels)) != 0:
            raise ValueError(
                f"CnnSpec.image_size must be divisible by 2**{len(self.channels)} "
                f"(one 2x2 pooling per conv layer), got {self.image_size}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)

    def _flat_dim(self) -> int:
        side = self.image_size // (2 ** len(self.channels))
        return self.channels[-1] * side * side

    def _head_dims(self) -> list[int]:
        if self.hidden:
            return [self._flat_dim(), self.hidden, self.output_dim]
        return [self._flat_dim(), self.output_dim]

    def param_shapes(self) -> list[tuple[int, ...]]:
        shapes: list[tuple[int, ...]] = []
        c_in = self.in_channels
        for c_out in self.channels:
            shapes += [(c_out, c_in, 3, 3), (c_out,)]
            c_in = c_out
        dims = self._head_dims()
        for fan_in, fan_out in itertools.pairwise(dims):
            shapes += [(fan_out, fan_in), (fan_out,)]
        return shapes

    def fan_ins(self) -> list[int]:
        fans = []
        c_in = self.in_channels
        for c_out in self.channels:
            fans += [c_in * 9, c_in * 9]
            c_in = c_out
        fans += [d for d in self._head_dims()[:-1] for _ in range(2)]
        return fans

    def forward(self, params: Sequence[Tensor], x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation][0]
        b, n = x.shape[0], x.shape[1]
        # Runs become channel groups: [n, B*C, H, W] with groups=B keeps them independent.
        h = x.transpose(0, 1).reshape(n, b * self.in_channels, self.image_size, self.image_size)
        n_conv = len(self.channels)
        for layer in range(n_conv):
            w, bias = params[2 * layer], params[2 * layer + 1]
            c_out = w.shape[1]
            h = F.conv2d(
                h, w.reshape(b * c_out, *w.shape[2:]), bias.reshape(-1), padding=1, groups=b
            )
            h = F.avg_pool2d(act(h), 2)
        h = h.reshape(n, b, -1).transpose(0, 1)
        return _batched_mlp(params[2 * n_conv :], h, act)

    def torch_module(self) -> nn.Module:
        act_cls = ACTIVATIONS[self.activation][1]
        layers: list[nn.Module] = []
        c_in = self.in_channels
        for c_out in self.channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), act_cls(), nn.AvgPool2d(2)]
            c_in = c_out
        layers.append(nn.Flatten())
        dims = self._head_dims()
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(dims) - 2:
                layers.append(act_cls())
        return nn.Sequential(*layers)
