"""Ordinary `nn.Module` models, each described by a frozen config that builds it.

Nothing here knows about batching: `tasks.functional.run` trains B copies of
any of them with ``torch.func``. Normalisation is LayerNorm or GroupNorm (no
running statistics, see `tasks.functional.run`). Sequence models read
``[n, T]`` token ids and return ``[n, T, vocab]`` next-token logits; causal
everywhere (attention mask, left-padded convolutions, per-position LayerNorm).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpo_env.errors import ConfigError, unknown_name_error

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
"""Activation name -> module class (the families draw from these)."""


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise unknown_name_error("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def _check_positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{type(owner).__name__}.{name} must be a positive int, got {name}={value!r}"
            )


# ----------------------------------------------------------------- transformer
class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention written out (``vmap`` has no batching rule for
    CPU ``scaled_dot_product_attention``; this is the same maths)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).view(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, t, d))


class PreNormBlock(nn.Module):
    """``x + attn(LN(x))``, then ``x + MLP(LN(x))`` with GELU."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.Linear(mlp_ratio * d_model, d_model),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """A causal character transformer: token + learned position embeddings, pre-LN blocks."""

    def __init__(
        self, vocab: int, seq_len: int, d_model: int, n_heads: int, n_layers: int, mlp_ratio: int
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        self.blocks = nn.Sequential(
            *[PreNormBlock(d_model, n_heads, mlp_ratio) for _ in range(n_layers)]
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.embed(tokens) + self.pos[: tokens.shape[-1]]
        return self.head(self.ln(self.blocks(h)))


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """`CharTransformer` sizes."""

    vocab: int
    seq_len: int
    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 1
    mlp_ratio: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "vocab", "seq_len", "d_model", "n_heads", "n_layers", "mlp_ratio")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"TransformerConfig.d_model must be a multiple of n_heads, got "
                f"{self.d_model=}, {self.n_heads=}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    @property
    def output_dim(self) -> int:
        return self.vocab

    def build(self) -> nn.Module:
        return CharTransformer(
            self.vocab, self.seq_len, self.d_model, self.n_heads, self.n_layers, self.mlp_ratio
        )

    def describe(self) -> str:
        return f"transformer(d={self.d_model},h={self.n_heads},L={self.n_layers})"


# ------------------------------------------------------------------- recurrent
class LstmLayer(nn.Module):
    """One LSTM layer, ``nn.LSTM``'s gates (input, forget, cell, output) written out."""

    def __init__(self, n_inputs: int, hidden: int):
        super().__init__()
        self.ih = nn.Linear(n_inputs, 4 * hidden)
        self.hh = nn.Linear(hidden, 4 * hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # x: [n, T, n_inputs]
        projected = self.ih(x)  # every step's input projection at once
        h = x.new_zeros(x.shape[0], self.hh.in_features)
        c = torch.zeros_like(h)
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (projected[:, t] + self.hh(h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, 1)


class GruLayer(nn.Module):
    """One GRU layer, ``nn.GRU``'s gates (reset, update, new) written out."""

    def __init__(self, n_inputs: int, hidden: int):
        super().__init__()
        self.ih = nn.Linear(n_inputs, 3 * hidden)
        self.hh = nn.Linear(hidden, 3 * hidden)

    def forward(self, x: Tensor) -> Tensor:  # x: [n, T, n_inputs]
        projected = self.ih(x)
        h = x.new_zeros(x.shape[0], self.hh.in_features)
        outputs = []
        for t in range(x.shape[1]):
            xr, xz, xn = projected[:, t].chunk(3, dim=-1)
            hr, hz, hn = self.hh(h).chunk(3, dim=-1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            outputs.append(h)
        return torch.stack(outputs, 1)


RECURRENT_LAYERS: dict[str, type[nn.Module]] = {"gru": GruLayer, "lstm": LstmLayer}
"""Why written out rather than ``nn.GRU`` / ``nn.LSTM``: ``vmap`` has no batching rule
for ``aten::lstm``, ``aten::lstm_cell`` or (without autograd) ``aten::gru``."""


class CharRecurrent(nn.Module):
    """Embedding -> stacked `GruLayer` or `LstmLayer` -> linear head."""

    def __init__(self, cell: str, vocab: int, hidden: int, n_layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(
            [RECURRENT_LAYERS[cell](hidden, hidden) for _ in range(n_layers)]
        )
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


RECURRENT_CELLS = tuple(RECURRENT_LAYERS)


@dataclasses.dataclass(frozen=True)
class RecurrentConfig:
    """`CharRecurrent` sizes."""

    cell: str
    vocab: int
    seq_len: int
    hidden: int = 32
    n_layers: int = 1

    def __post_init__(self) -> None:
        if self.cell not in RECURRENT_CELLS:
            raise unknown_name_error("recurrent cell", self.cell, RECURRENT_CELLS)
        _check_positive(self, "vocab", "seq_len", "hidden", "n_layers")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    @property
    def output_dim(self) -> int:
        return self.vocab

    def build(self) -> nn.Module:
        return CharRecurrent(self.cell, self.vocab, self.hidden, self.n_layers)

    def describe(self) -> str:
        return f"{self.cell}(h={self.hidden},L={self.n_layers})"


# ----------------------------------------------------------------------- 1-D CNN
class CausalConvBlock(nn.Module):
    """``x + act(LayerNorm(conv(x)))`` with a left-padded (causal) 1-D convolution;
    LayerNorm over channels at each position keeps it causal (GroupNorm would pool
    statistics over the whole sequence, future included)."""

    def __init__(self, channels: int, kernel: int, activation: str):
        super().__init__()
        self.pad = kernel - 1
        self.conv = nn.Conv1d(channels, channels, kernel)
        self.norm = nn.LayerNorm(channels)
        self.act = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:  # x: [n, C, T]
        h = self.conv(F.pad(x, (self.pad, 0)))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return x + self.act(h)


class CharCnn1d(nn.Module):
    """Embedding -> causal residual conv blocks -> linear head, next-character logits."""

    def __init__(self, vocab: int, channels: int, n_layers: int, kernel: int, activation: str):
        super().__init__()
        self.embed = nn.Embedding(vocab, channels)
        self.blocks = nn.Sequential(
            *[CausalConvBlock(channels, kernel, activation) for _ in range(n_layers)]
        )
        self.head = nn.Linear(channels, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.blocks(self.embed(tokens).transpose(1, 2))
        return self.head(h.transpose(1, 2))


@dataclasses.dataclass(frozen=True)
class Cnn1dConfig:
    """`CharCnn1d` sizes."""

    vocab: int
    seq_len: int
    channels: int = 32
    n_layers: int = 2
    kernel: int = 3
    activation: str = "relu"

    def __post_init__(self) -> None:
        _check_positive(self, "vocab", "seq_len", "channels", "n_layers", "kernel")
        _activation(self.activation)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    @property
    def output_dim(self) -> int:
        return self.vocab

    def build(self) -> nn.Module:
        return CharCnn1d(self.vocab, self.channels, self.n_layers, self.kernel, self.activation)

    def describe(self) -> str:
        return f"cnn1d(c={self.channels},L={self.n_layers},k={self.kernel},{self.activation})"


# ----------------------------------------------------------------------- 2-D CNN
class GroupNormCnn(nn.Module):
    """[conv3x3 -> GroupNorm -> act -> 2x2 average pool] per stage -> flatten -> linear."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: tuple[int, ...],
        groups: int,
        activation: str,
        n_classes: int,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = in_channels, image_size
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.GroupNorm(math.gcd(groups, c_out), c_out),
                _activation(activation),
                nn.AvgPool2d(2),
            ]
            c_in, side = c_out, side // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * side * side, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


@dataclasses.dataclass(frozen=True)
class Cnn2dConfig:
    """`GroupNormCnn` sizes."""

    image_size: int
    n_classes: int
    channels: tuple[int, ...] = (8, 16)
    groups: int = 4
    activation: str = "relu"
    in_channels: int = 1

    def __post_init__(self) -> None:
        _check_positive(self, "image_size", "n_classes", "groups", "in_channels")
        if not self.channels or self.image_size >> len(self.channels) < 1:
            raise ConfigError(
                f"Cnn2dConfig needs 1 <= len(channels) <= log2(image_size), got "
                f"{self.channels=}, {self.image_size=}"
            )
        _activation(self.activation)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)

    @property
    def output_dim(self) -> int:
        return self.n_classes

    def build(self) -> nn.Module:
        return GroupNormCnn(
            self.in_channels,
            self.image_size,
            self.channels,
            self.groups,
            self.activation,
            self.n_classes,
        )

    def describe(self) -> str:
        return f"cnn2d(c={'x'.join(map(str, self.channels))},g={self.groups},{self.activation})"


# ------------------------------------------------------------------ residual MLP
class ResidualBlock(nn.Module):
    """``x + W2 act(W1 LayerNorm(x))``."""

    def __init__(self, width: int, activation: str):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.act = _activation(activation)
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ResidualMlp(nn.Module):
    """Linear in -> residual LayerNorm blocks -> LayerNorm -> linear out."""

    def __init__(self, n_inputs: int, width: int, n_blocks: int, activation: str, n_outputs: int):
        super().__init__()
        self.inp = nn.Linear(n_inputs, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width, activation) for _ in range(n_blocks)])
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.norm(self.blocks(self.inp(x))))


@dataclasses.dataclass(frozen=True)
class ResMlpConfig:
    """`ResidualMlp` sizes."""

    n_inputs: int
    n_outputs: int
    width: int = 32
    n_blocks: int = 1
    activation: str = "relu"

    def __post_init__(self) -> None:
        _check_positive(self, "n_inputs", "n_outputs", "width", "n_blocks")
        _activation(self.activation)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.n_inputs,)

    @property
    def output_dim(self) -> int:
        return self.n_outputs

    def build(self) -> nn.Module:
        return ResidualMlp(
            self.n_inputs, self.width, self.n_blocks, self.activation, self.n_outputs
        )

    def describe(self) -> str:
        return f"resmlp(w={self.width},L={self.n_blocks},{self.activation})"


# ------------------------------------------------------------------- plain MLP
@dataclasses.dataclass(frozen=True)
class MlpConfig:
    """A plain MLP (``nn.Sequential`` of Linear + activation), the architecture of the
    hand-batched `tasks.nets.MlpSpec`, for comparing the two engines on the same work."""

    n_inputs: int
    hidden: tuple[int, ...]
    n_outputs: int
    activation: str = "relu"

    def __post_init__(self) -> None:
        _check_positive(self, "n_inputs", "n_outputs")
        if any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(f"MlpConfig.hidden must be positive ints, got {self.hidden!r}")
        _activation(self.activation)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.n_inputs,)

    @property
    def output_dim(self) -> int:
        return self.n_outputs

    def build(self) -> nn.Module:
        layers: list[nn.Module] = []
        width = self.n_inputs
        for h in self.hidden:
            layers += [nn.Linear(width, h), _activation(self.activation)]
            width = h
        return nn.Sequential(*layers, nn.Linear(width, self.n_outputs))

    def describe(self) -> str:
        return f"mlp({'x'.join(map(str, self.hidden)) or 'linear'},{self.activation})"
