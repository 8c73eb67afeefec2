"""Torch's intra-op thread count, set in one place.

The batched runs' tensors are small: on a few cores, intra-op threads cost
more in contention than they save (a second thread spin-waiting on a busy
2-core machine measured ~20x slower), so every entry point runs on one thread
unless ``HPO_RL_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

THREADS_ENV = "HPO_RL_NUM_THREADS"


def default_threads() -> int:
    """``HPO_RL_NUM_THREADS`` if set, else 1."""
    return int(os.environ.get(THREADS_ENV, "1"))


def configure_threads(n_threads: int | None = None) -> None:
    """Set torch's intra-op threads for the process (default: `default_threads`)."""
    torch.set_num_threads(default_threads() if n_threads is None else int(n_threads))


@contextlib.contextmanager
def torch_threads(n_threads: int | None = None) -> Iterator[None]:
    """`configure_threads` for the duration of a block, then the previous count again."""
    before = torch.get_num_threads()
    configure_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
