"""Atomic, resumable checkpoints of a meta-training run (model, normalisation, RNG and progress)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.common.files import atomic_write, atomic_write_json
from agents.policy.bundle import json_safe

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BUNDLE_DIR = "bundle"
EVAL_LOG = "eval.jsonl"
MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"
STATE_FILE = "state.json"
CHECKPOINT_PREFIX = "step_"


def _rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    return {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state().tolist(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _base_env(vec_env: Any) -> Any:
    env = vec_env
    while hasattr(env, "venv"):
        env = env.venv
    return env


def checkpoint_dirs(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))


def checkpoint_is_valid(path: Path) -> bool:
    """All three files present, the zips readable and state.json parses."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
        return (
            isinstance(state.get("num_timesteps"), int)
            and zipfile.is_zipfile(path / MODEL_FILE)
            and zipfile.ZipFile(path / MODEL_FILE).testzip() is None
            and (path / VECNORMALIZE_FILE).stat().st_size > 0
        )
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    for path in reversed(checkpoint_dirs(run_dir)):
        if checkpoint_is_valid(path):
            return path
        warnings.warn(f"skipping damaged checkpoint {path}", stacklevel=2)
    return None


def save_checkpoint(
    run_dir: Path, model: Any, vec_normalize: Any, progress: Mapping[str, Any], keep: int
) -> Path:
    """Write a checkpoint for ``model.num_timesteps`` atomically; prune to ``keep``.

    Files are written into a hidden temporary directory (each file itself via
    temp file + ``os.replace``), which is then renamed into place: a kill at
    any moment leaves older checkpoints untouched and no partial new one.
    """
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"{CHECKPOINT_PREFIX}{model.num_timesteps:012d}"
    final = root / name
    if final.exists():
        return final
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        atomic_write(staging / MODEL_FILE, lambda tmp: model.save(tmp))
        atomic_write(staging / VECNORMALIZE_FILE, lambda tmp: vec_normalize.save(tmp))
        state = {
            "num_timesteps": int(model.num_timesteps),
            "n_updates": int(getattr(model, "_n_updates", 0)),
            "rng": _rng_state(),
            "env_rng": _env_rng_state(vec_normalize),
            "saved_at": datetime.now(timezone.utc).isoformat(),
            **progress,
        }
        atomic_write_json(staging / STATE_FILE, json_safe(state))
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune_checkpoints(run_dir, keep)
    return final


def _env_rng_state(vec_env: Any) -> Any:
    """The task/seed RNG state of the training env: one numpy bit-generator state
    (local `HPOVecEnv`) or a list of them (one per Ray worker); None if unknown."""
    base = _base_env(vec_env)
    if hasattr(base, "get_rng_states"):
        return {"workers": base.get_rng_states()}
    rng = getattr(base, "rng", None)
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


def _set_env_rng_state(vec_env: Any, state: Any) -> None:
    base = _base_env(vec_env)
    if state is None:
        return
    if isinstance(state, dict) and "workers" in state:
        if hasattr(base, "set_rng_states"):
            base.set_rng_states(state["workers"])
    elif isinstance(getattr(base, "rng", None), np.random.Generator):
        base.rng.bit_generator.state = state


def _prune_checkpoints(run_dir: Path, keep: int) -> None:
    for old in checkpoint_dirs(run_dir)[:-keep]:
        # Rename first: a kill mid-delete leaves a hidden directory, never a
        # half-deleted checkpoint that looks complete.
        trash = old.with_name(f".trash-{old.name}")
        with contextlib.suppress(OSError):
            os.replace(old, trash)
            shutil.rmtree(trash, ignore_errors=True)


def _clean_staging(run_dir: Path) -> None:
    root = run_dir / CHECKPOINT_DIR
    if root.is_dir():
        for stale in root.iterdir():
            if stale.name.startswith("."):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(
                    missing_ok=True
                )


# -- callbacks ------------------------------------------------------------------------
