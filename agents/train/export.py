"""Export a trained model as a policy bundle, with the metadata that makes it reproducible."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agents.common.platform import machine_fingerprint
from agents.policy.bundle import (
    FORMAT_VERSION,
    BundleContents,
    actor_weights_from_sb3,
    normalization_from_vecnormalize,
    write_bundle,
)
from agents.train.config import TrainConfig
from hpo_env import (
    FeatureExtractor,
    HyperparameterSpace,
)

ACTION_MAPPING = (
    "action a in [-1, 1]^k; component i multiplies hyperparameter i by 10**(a_i * max_step) "
    "for log-scale specs, adds a_i * max_step for linear ones, then clips to [low, high]; "
    "components for hyperparameters a run does not use are ignored; a spec with a prior "
    "(hparams[i].prior) gives the run value * prior(progress at the coming interval's midpoint)"
)


def git_revision() -> str:
    """``git rev-parse HEAD`` of the source checkout, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version() -> str:
    try:
        return importlib.metadata.version("hpo-rl")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_metadata(
    config: TrainConfig,
    space: HyperparameterSpace,
    control: Mapping[str, Any],
    eval_summary: Mapping[str, Any] | None,
    training: Mapping[str, Any],
    command: str,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "feature_spec_version": config.feature_spec_version,
        "feature_names": FeatureExtractor.feature_names(space, config.feature_spec_version),
        "hparams": space.to_dicts(),
        "action": {"low": -1.0, "high": 1.0, "size": len(space), "mapping": ACTION_MAPPING},
        "control": dict(control),
        "net_arch": list(config.net_arch),
        "activation": "tanh",
        "observation_normalization": "clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)",
        "command": command,
        "seed": config.seed,
        "config": config.to_dict(),
        "package_version": package_version(),
        "git_revision": git_revision(),
        "created": datetime.now(timezone.utc).isoformat(),
        # The numbers above reproduce to the bit only on this kind of CPU and kernel path.
        "platform": machine_fingerprint(),
        "training": dict(training),
        "heldout_evaluation": dict(eval_summary or {}),
        "algorithm": "stable-baselines3 PPO (MlpPolicy), deterministic action = clipped Gaussian mean",
    }


def export_bundle(
    path: Path,
    model: Any,
    vec_normalize: Any,
    config: TrainConfig,
    control: Mapping[str, Any],
    eval_summary: Mapping[str, Any] | None,
    training: Mapping[str, Any],
    command: str,
) -> Path:
    """Write the safe policy bundle of a trained PPO model."""
    space = config.space()
    contents = BundleContents(
        weights=actor_weights_from_sb3(model.policy),
        normalization=normalization_from_vecnormalize(vec_normalize),
        metadata=build_metadata(config, space, control, eval_summary, training, command),
    )
    return write_bundle(path, contents)
