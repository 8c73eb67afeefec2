"""Tiny plain-``torch.nn`` models for the transfer tasks (none of them is a project family).

Each is small enough that a 2,000-update run takes seconds on one CPU thread.
Dropout is off everywhere so a run depends only on its seed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from agents.benchmark.transfer.data import Dataset
from hpo_env.errors import unknown_name_error

MODEL_KINDS = ("mlp", "resmlp", "gru", "lstm", "cnn1d", "transformer")


class MLP(nn.Module):
    """Two hidden layers with GELU (the project's MLP families use tanh/ReLU-style nets)."""

    def __init__(self, n_inputs: int, width: int, n_outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_inputs, width), nn.GELU(),
            nn.Linear(width, width), nn.GELU(),
            nn.Linear(width, n_outputs),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResidualMLP(nn.Module):
    """Pre-norm residual MLP (LayerNorm, skip connections): no project family has either."""

    def __init__(self, n_inputs: int, width: int, n_outputs: int, n_blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Linear(n_inputs, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
            for _ in range(n_blocks)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(self.norm(h))


class RowRNN(nn.Module):
    """A GRU or LSTM reading an image one row per time step; classifies from the last state."""

    def __init__(self, cell: str, n_inputs: int, width: int, n_outputs: int) -> None:
        super().__init__()
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_class(n_inputs, width, batch_first=True)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class CharRNN(nn.Module):
    """Character-level language model: embedding, a GRU or LSTM, a linear read-out."""

    def __init__(self, cell: str, vocab: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_class(16, width, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out)


class CharCNN(nn.Module):
    """Causal 1-D convolutions over characters (left padding only, so no peeking ahead)."""

    def __init__(self, vocab: int, width: int, kernel: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.pad = kernel - 1
        self.conv1 = nn.Conv1d(16, width, kernel)
        self.conv2 = nn.Conv1d(width, width, kernel, dilation=2)
        self.head = nn.Linear(width, vocab)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x).transpose(1, 2)  # [B, C, T]
        h = torch.relu(self.conv1(nn.functional.pad(h, (self.pad, 0))))
        h = torch.relu(self.conv2(nn.functional.pad(h, (2 * self.pad, 0))))
        return self.head(h.transpose(1, 2))


class CharTransformer(nn.Module):
    """A one-block causal transformer language model (pre-norm, learned positions)."""

    def __init__(self, vocab: int, width: int, seq_len: int, n_heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(seq_len, width) * 0.02)
        self.block = nn.TransformerEncoderLayer(
            width, n_heads, dim_feedforward=2 * width, dropout=0.0,
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.causal_mask: Tensor
        self.register_buffer(
            "causal_mask", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        h = self.embed(x) + self.position[:t]
        h = self.block(h, src_mask=self.causal_mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def build_model(kind: str, data: Dataset, width: int, seq_len: int) -> nn.Module:
    """The model ``kind`` (one of `MODEL_KINDS`) sized for ``data``; seed torch first."""
    if kind == "mlp":
        return MLP(data.n_inputs, width, data.n_outputs)
    if kind == "resmlp":
        return ResidualMLP(data.n_inputs, width, data.n_outputs)
    if kind in ("gru", "lstm"):
        if data.kind == "language":
            return CharRNN(kind, data.n_inputs, width)
        return RowRNN(kind, data.n_inputs, width, data.n_outputs)
    if kind == "cnn1d":
        return CharCNN(data.n_inputs, width)
    if kind == "transformer":
        return CharTransformer(data.n_inputs, width, seq_len)
    raise unknown_name_error("model", kind, MODEL_KINDS)
