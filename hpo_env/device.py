"""Where batched runs compute: one resolver for every ``device`` option.

Runs default to the CPU, the tested path. Whatever the device, what crosses
into `hpo_env` (statistics, validation, hyperparameters) is on the CPU, so the
features, rewards and the SB3 observations stay CPU tensors / NumPy arrays.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("gpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hpo_env.errors.ConfigError: unknown device 'gpu', expected one of ['auto', 'cpu', 'cuda', 'cuda:<index>']...
"""

from __future__ import annotations

import torch

from hpo_env.errors import ConfigError, unknown_name_error

DEVICE_CHOICES = ("cpu", "cuda", "cuda:<index>", "auto")
"""Accepted ``device`` values; ``auto`` is ``cuda`` when CUDA is available, else ``cpu``."""


def check_device_name(device: str | torch.device) -> None:
    """Raise `ConfigError` naming the choices unless ``device`` is one of `DEVICE_CHOICES`.

    Checks the spelling only (a config written on a GPU machine stays valid
    elsewhere); `resolve_device` also checks that the device exists.
    """
    name = str(device)
    if name in ("cpu", "cuda", "auto"):
        return
    prefix, _, index = name.partition(":")
    if prefix == "cuda" and index.isdigit():
        return
    raise unknown_name_error("device", name, DEVICE_CHOICES)


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """The `torch.device` for a ``device`` option (``auto``: CUDA if available, else CPU).

    Raises:
        ConfigError: for an unknown name, or a CUDA device this machine lacks.
    """
    check_device_name(device)
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} requested but CUDA is not available here "
                "(torch.cuda.is_available() is False); use 'cpu' or 'auto'"
            )
        index = resolved.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) exist; use 'cuda:0' or 'auto'"
            )
    return resolved
