"""Optional dependencies (the package's extras), imported on first use.

The core install deploys a shipped policy with torch, numpy, safetensors and
gymnasium only; meta-training, plots and Ray come with extras. `require`
imports an extra's module or raises one `MissingExtraError` that names the
``pip install`` line, instead of a bare ``ModuleNotFoundError`` from deep inside.

Example:
    >>> plt = require("matplotlib.pyplot", extra="plot", purpose="sched.plot()")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hpo_env.errors import MissingExtraError

EXTRAS = {
    "train": "stable-baselines3, wandb, tqdm, scikit-learn",
    "plot": "matplotlib",
    "ray": "ray[tune]",
}
"""What each extra installs (pyproject.toml's ``[project.optional-dependencies]``)."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise `MissingExtraError` naming the extra that provides it.

    Args:
        module: Dotted module name, e.g. ``"stable_baselines3"``.
        extra: The package extra that installs it (a key of `EXTRAS`).
        purpose: What needs it, for the message (e.g. ``"hpo-rl train"``).

    Raises:
        MissingExtraError: ``module`` (or one of its own imports) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        raise MissingExtraError(
            f"{purpose} needs {missing!r} ({EXTRAS.get(extra, extra)}), which is not installed: "
            f'pip install "hpo-rl[{extra}]"'
        ) from exc


def require_extras(purpose: str, modules: dict[str, str]) -> None:
    """`require` every ``module -> extra`` of ``modules`` up front, so a command
    missing an extra stops with one line before it starts any work."""
    for module, extra in modules.items():
        require(module, extra=extra, purpose=purpose)
