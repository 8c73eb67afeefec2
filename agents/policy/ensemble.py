"""An ensemble bundle: several meta-trained policies acting on their mean action.

A single PPO run is a lottery ticket: the same command with another training seed
lands elsewhere. An ensemble of seeds of one recipe averages that noise out at
deployment (issue 26, lever 5).

Layout (each member is an ordinary bundle, loaded and validated as one)::

    metadata.json      the shared interface (features, hparams, control) + "ensemble"
    members/0/         policy.safetensors, normalization.json, metadata.json
    members/1/ ...

Every member must observe the same features and control the same hyperparameters
within the same bounds; each keeps its own observation normalisation. The
deterministic action is the mean of the members' Gaussian means, clipped to [-1, 1].

Example::

    from agents.policy.ensemble import write_ensemble
    write_ensemble("runs/ensemble", ["runs/seed1/bundle", "runs/seed2/bundle", "runs/seed3/bundle"])
    policy = TuningPolicy.load("runs/ensemble")   # an EnsemblePolicy
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.common.files import atomic_write_json
from agents.policy.bundle import (
    FORMAT_VERSION,
    METADATA_FILE,
    BundleError,
    BundleJSONError,
    BundleKeyError,
    BundleNotFoundError,
    write_bundle,
)
from agents.policy.stacked_actor import StackedActor
from agents.policy.tuning_policy import TuningPolicy

ENSEMBLE_KEY = "ensemble"
"""The top-level metadata key that marks an ensemble bundle."""
MEMBERS_DIR = "members"
SHARED_KEYS = ("feature_spec_version", "feature_names", "hparams", "activation", "action")
"""Metadata every member must agree on (what a deployment feeds and receives)."""


def is_ensemble(path: Path) -> bool:
    """Whether the bundle directory ``path`` is an ensemble (its metadata says so)."""
    meta = path / METADATA_FILE
    if not meta.is_file():
        return False
    try:
        return ENSEMBLE_KEY in json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # read_bundle reports the broken file with its own error


def member_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The member bundle folders of the ensemble bundle at ``path``, in order."""
    path = Path(path)
    return _member_paths(path, _read_metadata(path))


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((path / METADATA_FILE).read_text()))
    except FileNotFoundError:
        raise BundleNotFoundError(f"{path / METADATA_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleJSONError(f"{path / METADATA_FILE} is not valid JSON ({exc})") from None


def _member_paths(path: Path, metadata: Mapping[str, Any]) -> list[Path]:
    names = metadata.get(ENSEMBLE_KEY, {}).get("members")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BundleKeyError(
            f"{path / METADATA_FILE}: 'ensemble.members' must list the member folders"
        )
    members = []
    for name in names:
        member = (path / name).resolve()
        if path.resolve() not in member.parents:  # never read outside the bundle
            raise BundleKeyError(f"{path / METADATA_FILE}: member {name!r} is outside {path}")
        members.append(member)
    return members


class EnsemblePolicy(TuningPolicy):
    """`TuningPolicy` whose action is the mean of its members' (each normalises its own input)."""

    def __init__(
        self,
        members: Sequence[TuningPolicy],
        source: Path | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if len(members) < 2:
            raise BundleError(f"an ensemble needs at least 2 member policies, got {len(members)}")
        first = members[0]
        for j, member in enumerate(members[1:], start=1):
            for key in SHARED_KEYS:
                if member.metadata.get(key) != first.metadata.get(key):
                    raise BundleKeyError(
                        f"ensemble member {j} differs from member 0 in {key!r}; members must "
                        "observe the same features and control the same hyperparameters "
                        "(train them with the same recipe, other seeds)"
                    )
        super().__init__(first.contents, source=source)
        self.members = list(members)
        # Every decision of a deployed ensemble takes this path: `StackedActor` says why.
        self._stacked = StackedActor.of(self.members)
        shared = {k: v for k, v in first.metadata.items() if k != ENSEMBLE_KEY}
        self.metadata = {**shared, **(metadata or {})}
        self.metadata[ENSEMBLE_KEY] = {
            "combine": "mean_action",
            "n_members": len(self.members),
            **dict((metadata or {}).get(ENSEMBLE_KEY, {})),
        }

    @classmethod
    def load(cls, path_or_name: str | os.PathLike[str] = "default") -> EnsemblePolicy:
        from agents.policy.tuning_policy import resolve_bundle_path

        path = resolve_bundle_path(path_or_name)
        metadata = _read_metadata(path)
        members = [TuningPolicy.load(m) for m in _member_paths(path, metadata)]
        return cls(members, source=path, metadata=metadata)

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_ensemble(path, self.members, extra_metadata=self.metadata)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        raise TypeError("an ensemble normalises per member; call act() instead")

    def action_mean(self, normalized_obs: Tensor) -> Tensor:
        raise TypeError("an ensemble normalises per member; call act() instead")

    def _gaussian(self, obs: np.ndarray) -> tuple[Tensor, Tensor]:
        # Each member's own Gaussian (its own normalisation); the means and log stds average.
        log_std = torch.stack([member._log_std for member in self.members]).mean(0)
        return self._mean_action(obs), log_std

    def _mean_action(self, obs: np.ndarray) -> Tensor:
        if self._stacked is not None:
            return torch.from_numpy(self._stacked.mean_action(obs))
        means = [member._mean_action(obs) for member in self.members]
        return torch.stack(means).mean(0)

    def __repr__(self) -> str:
        return f"EnsemblePolicy(source={str(self.source)!r}, members={len(self.members)})"


def write_ensemble(
    path: str | os.PathLike[str],
    members: Sequence[TuningPolicy | str | os.PathLike[str]],
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write an ensemble bundle of ``members`` (policies or bundle paths) to ``path``.

    The members are checked for a shared interface first (nothing is written if they
    differ); each is copied under ``members/<j>/``; the top ``metadata.json`` is
    written last, so a kill mid-write leaves no loadable half-ensemble.
    """
    policies = [m if isinstance(m, TuningPolicy) else TuningPolicy.load(m) for m in members]
    EnsemblePolicy(policies)  # validates the shared interface
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = []
    for j, policy in enumerate(policies):
        name = f"{MEMBERS_DIR}/{j}"
        write_bundle(path / name, policy.contents)
        names.append(name)
    first = policies[0].metadata
    metadata = {k: first[k] for k in (*SHARED_KEYS, "net_arch", "control") if k in first}
    metadata.update({k: v for k, v in (extra_metadata or {}).items() if k != ENSEMBLE_KEY})
    metadata["format_version"] = FORMAT_VERSION
    metadata[ENSEMBLE_KEY] = {
        "combine": "mean_action",
        "members": names,
        "member_sources": [str(p.source) if p.source else None for p in policies],
        "member_seeds": [p.metadata.get("seed") for p in policies],
    }
    atomic_write_json(path / METADATA_FILE, metadata)
    return path
