"""Repository-wide pytest set-up."""

import os

import torch

# The engine's tensors are small: on 2 cores torch's intra-op threads only add
# contention (measured 60x slower under load), so tests run single-threaded.
torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
