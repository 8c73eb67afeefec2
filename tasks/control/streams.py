"""Counter-based random streams, one per run, drawn for all B runs in one op.

A batched run must not let run i's random numbers depend on B or on the other
runs. A single `torch.Generator` shared by B runs breaks that; one generator
per run costs a Python loop per draw. Instead every run owns a 64-bit key and
a counter, and a uniform is a hash of (key, counter, position): vectorised over
runs, reproducible alone with B=1, and trivially reset per run.

The hash is the murmur3 32-bit finaliser applied twice; its statistical
quality is ample for action sampling and start states.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B1


def _fmix32(h: Tensor) -> Tensor:
    # Products of two 32-bit values can exceed int64 and wrap; the low 32 bits
    # stay exact in two's complement, so masking after each product is enough.
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def stream_keys(seeds: Sequence[int], stream: int) -> Tensor:
    """Keys [B, 2] (int64, each word < 2**32) for stream number ``stream`` of each seed.

    Distinct ``stream`` numbers give independent streams of the same seed
    (e.g. one for rollouts, one for evaluation).
    """
    words = [
        np.random.SeedSequence([int(s) & ((1 << 63) - 1), stream]).generate_state(2) for s in seeds
    ]
    return torch.tensor(np.asarray(words, dtype=np.int64).reshape(len(seeds), 2), dtype=torch.int64)


def uniforms(keys: Tensor, counters: Tensor, shape: Sequence[int]) -> Tensor:
    """Uniforms in (0, 1), float64 [B, *shape], for draw number ``counters[b]`` of run b.

    Args:
        keys: [B, 2] int64 from `stream_keys`.
        counters: [B] int64; the caller advances them by one per draw.
        shape: per-run shape of the draw.

    Example:
        >>> keys = stream_keys([0, 1], stream=0)
        >>> u = uniforms(keys, torch.zeros(2, dtype=torch.int64), (3,))
        >>> bool(((u > 0) & (u < 1)).all()), tuple(u.shape)
        (True, (2, 3))
    """
    n = int(np.prod(shape)) if len(shape) else 1
    position = torch.arange(n, dtype=torch.int64, device=keys.device)
    index = counters.reshape(-1, 1) * n + position  # [B, n]
    h = _fmix32(((index & _MASK32) * _GOLDEN32 + keys[:, :1]) & _MASK32)
    h = _fmix32(h ^ keys[:, 1:] ^ ((index >> 32) & _MASK32))
    u = (h.to(torch.float64) + 0.5) * (1.0 / 2**32)
    return u.reshape(-1, *shape)
