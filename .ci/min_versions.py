"""Print pip pins (``name==lower_bound``) for the packages whose minimum versions CI checks.

Reads ``pyproject.toml`` so the check follows what the package claims: the core
dependencies and the ``train`` extra's packages the deploy tests import (the
SB3 callback, wandb logging), each pinned to its ``>=`` lower bound. torch is
left out (CI keeps the pinned CPU wheel); so are the extras' compiled packages
that the deploy tests do not import (scikit-learn, matplotlib comes with SB3).

Usage: ``python .ci/min_versions.py`` -> ``numpy==1.24 gymnasium==1.0 ...``
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

TRAIN_CHECKED = ("stable-baselines3", "tqdm", "wandb")
"""The train extra's packages the deploy tests import (the SB3 callback, wandb logging)."""
SKIP = ("torch",)


def pins(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"]) + [
        r for r in project["optional-dependencies"]["train"] if r.startswith(TRAIN_CHECKED)
    ]
    out = []
    for requirement in requirements:
        match = re.fullmatch(
            r"([A-Za-z0-9_.\-]+)>=([0-9][0-9A-Za-z.]*)", requirement.replace(" ", "")
        )
        if match is None:
            raise SystemExit(f"cannot read a lower bound from {requirement!r}")
        name, low = match.groups()
        if name not in SKIP:
            out.append(f"{name}=={low}")
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    print(" ".join(pins(root / "pyproject.toml")))
