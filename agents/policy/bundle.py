"""The policy bundle: a directory of weights plus JSON that loads without running code.

Layout::

    policy.safetensors   actor weights only (hidden layers, action mean head, log_std)
    normalization.json   observation mean / var / clip / epsilon as plain numbers
    metadata.json        versions, features, hyperparameter space, architecture, provenance

Loading never unpickles: weights are read with safetensors only, after a check
that the file is not a pickle / ``torch.save`` archive, and every file is
validated against the metadata and the installed feature code. Each failure
raises a specific `BundleError` subclass whose message names the file.

This module also holds the atomic-write helpers (temp file + ``os.replace``)
used for everything that must survive a kill.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agents.common.files import atomic_write_bytes, atomic_write_json, json_safe
from hpo_env import FeatureExtractor, HyperparameterSpace
from hpo_env.errors import HpoRlError
from hpo_env.features import FEATURE_SPEC_VERSIONS

FORMAT_VERSION = 1
"""Bundle layout version this code writes and the newest it reads."""
WEIGHTS_FILE = "policy.safetensors"
NORMALIZATION_FILE = "normalization.json"
METADATA_FILE = "metadata.json"
BUNDLE_FILES = (WEIGHTS_FILE, NORMALIZATION_FILE, METADATA_FILE)

REQUIRED_METADATA_KEYS = (
    "format_version",
    "feature_spec_version",
    "feature_names",
    "hparams",
    "net_arch",
    "activation",
)
REQUIRED_NORMALIZATION_KEYS = ("mean", "var", "clip_obs", "epsilon")
ACTIVATIONS = ("tanh", "relu")

# Pickle protocol 2+ starts with PROTO (0x80); torch.save archives are zips.
_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"


class BundleError(HpoRlError, ValueError):
    """A policy bundle cannot be loaded; the message names the file and the fix."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """The bundle directory or one of its files is missing."""


class BundleCorruptError(BundleError):
    """A weights file that is truncated or not valid safetensors."""


class BundlePickleError(BundleCorruptError):
    """A weights file that is a pickle (refused: loading it could run code)."""


class BundleJSONError(BundleError):
    """A JSON file that does not parse or is not an object."""


class BundleKeyError(BundleError):
    """A JSON file or the weights lack required entries."""


class BundleVersionError(BundleError):
    """The bundle was written by a newer format than this code reads."""


class FeatureSpecMismatchError(BundleError):
    """The bundle's observation features differ from the installed feature code."""


class BundleShapeError(BundleError):
    """Tensor shapes inconsistent with the metadata."""


# -- atomic writes -------------------------------------------------------------


# -- contents ------------------------------------------------------------------


@dataclasses.dataclass
class BundleContents:
    """A bundle in memory: actor weights, observation normalisation, metadata."""

    weights: dict[str, Tensor]
    """``layers.{i}.weight/bias``, ``action_mean.weight/bias``, ``log_std`` (float32)."""
    normalization: dict[str, Any]
    """``mean``, ``var`` (lists of D floats), ``clip_obs``, ``epsilon``."""
    metadata: dict[str, Any]

    @property
    def space(self) -> HyperparameterSpace:
        return HyperparameterSpace.from_dicts(self.metadata["hparams"])


def actor_weights_from_sb3(policy: Any) -> dict[str, Tensor]:
    """The actor of an SB3 ``ActorCriticPolicy`` (MlpPolicy, separate pi/vf nets)
    as bundle tensors: the hidden ``Linear`` layers, the action mean head and ``log_std``."""
    layers = [m for m in policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    weights: dict[str, Tensor] = {}
    for i, layer in enumerate(layers):
        weights[f"layers.{i}.weight"] = layer.weight.detach().cpu().float().contiguous().clone()
        weights[f"layers.{i}.bias"] = layer.bias.detach().cpu().float().contiguous().clone()
    weights["action_mean.weight"] = (
        policy.action_net.weight.detach().cpu().float().contiguous().clone()
    )
    weights["action_mean.bias"] = policy.action_net.bias.detach().cpu().float().contiguous().clone()
    weights["log_std"] = policy.log_std.detach().cpu().float().contiguous().clone()
    return weights


def normalization_from_vecnormalize(vec_normalize: Any) -> dict[str, Any]:
    """Observation statistics of an SB3 ``VecNormalize`` as plain numbers.

    Python floats round-trip float64 exactly through JSON, so the deployed
    normalisation equals VecNormalize's bit for bit.
    """
    rms = vec_normalize.obs_rms
    return {
        "mean": [float(x) for x in rms.mean.reshape(-1)],
        "var": [float(x) for x in rms.var.reshape(-1)],
        "count": float(rms.count),
        "clip_obs": float(vec_normalize.clip_obs),
        "epsilon": float(vec_normalize.epsilon),
        "norm_obs": bool(vec_normalize.norm_obs),
    }


# -- writing -------------------------------------------------------------------


def write_bundle(path: str | os.PathLike[str], contents: BundleContents) -> Path:
    """Validate ``contents`` and write the three files, each atomically.

    The metadata is written last, so a directory with a complete metadata.json
    next to older weights can only come from an interrupted overwrite of an
    existing bundle; `validate_contents` catches the mismatches that matter.
    """
    from safetensors.torch import save as save_safetensors

    validate_contents(contents, Path(path))
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in contents.weights.items()}
    atomic_write_bytes(path / WEIGHTS_FILE, save_safetensors(tensors, metadata={"format": "pt"}))
    atomic_write_json(path / NORMALIZATION_FILE, json_safe(contents.normalization))
    atomic_write_json(path / METADATA_FILE, json_safe(contents.metadata))
    return path


# -- reading -------------------------------------------------------------------


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise BundleNotFoundError(
            f"policy bundle file {path} is missing; a bundle directory holds {list(BUNDLE_FILES)} "
            "(write one with `hpo-rl train`)"
        )
    return path


def _read_json(path: Path) -> dict[str, Any]:
    _require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleJSONError(
            f"{path} is not valid JSON ({exc}); the bundle is damaged, re-export it"
        ) from None
    if not isinstance(data, dict):
        raise BundleJSONError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _require_keys(data: Mapping[str, Any], keys: tuple[str, ...], path: Path) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise BundleKeyError(f"{path} lacks required keys {missing} (has {sorted(data)})")


def _read_weights(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load as load_safetensors

    _require_file(path)
    data = path.read_bytes()
    if data.startswith(_PICKLE_MAGIC) or data.startswith(_ZIP_MAGIC):
        raise BundlePickleError(
            f"{path} is a pickle / torch.save file, not safetensors; refusing to load it because "
            "unpickling can run arbitrary code. Re-export the bundle with `hpo-rl train` or "
            "`TuningPolicy.save`"
        )
    if len(data) < 8:
        raise BundleCorruptError(
            f"{path} is truncated ({len(data)} bytes; safetensors needs an 8-byte header)"
        )
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or 8 + header_len > len(data):
        raise BundleCorruptError(
            f"{path} is truncated or corrupt: header claims {header_len} bytes, file has {len(data) - 8}"
        )
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise BundleCorruptError(f"{path} is not a valid safetensors file ({exc})") from None
    return {k: v.float() for k, v in tensors.items()}


def read_bundle(path: str | os.PathLike[str]) -> BundleContents:
    """Load and validate a bundle directory (never unpickles).

    Raises:
        BundleNotFoundError: the directory or a file is missing.
        BundleJSONError, BundleKeyError, BundleVersionError, FeatureSpecMismatchError,
        BundlePickleError, BundleCorruptError, BundleShapeError: see their docs.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleNotFoundError(
            f"policy bundle directory {path} does not exist (expected a directory holding {list(BUNDLE_FILES)})"
        )
    metadata = _read_json(path / METADATA_FILE)
    _require_keys(metadata, REQUIRED_METADATA_KEYS, path / METADATA_FILE)
    version = metadata["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleVersionError(
            f"{path / METADATA_FILE}: format_version must be an int >= 1, got {version!r}"
        )
    if version > FORMAT_VERSION:
        raise BundleVersionError(
            f"{path / METADATA_FILE}: bundle format_version {version} is newer than this hpo-rl "
            f"supports ({FORMAT_VERSION}); upgrade hpo-rl"
        )
    normalization = _read_json(path / NORMALIZATION_FILE)
    _require_keys(normalization, REQUIRED_NORMALIZATION_KEYS, path / NORMALIZATION_FILE)
    weights = _read_weights(path / WEIGHTS_FILE)
    contents = BundleContents(weights=weights, normalization=normalization, metadata=metadata)
    validate_contents(contents, path)
    return contents


def validate_contents(contents: BundleContents, path: Path) -> None:
    """Check versions, feature names and every shape against the metadata."""
    meta, norm, weights = contents.metadata, contents.normalization, contents.weights
    meta_file, norm_file, weights_file = (
        path / METADATA_FILE,
        path / NORMALIZATION_FILE,
        path / WEIGHTS_FILE,
    )
    _require_keys(meta, REQUIRED_METADATA_KEYS, meta_file)
    _require_keys(norm, REQUIRED_NORMALIZATION_KEYS, norm_file)
    version = meta["feature_spec_version"]
    if isinstance(version, bool) or version not in FEATURE_SPEC_VERSIONS:
        raise FeatureSpecMismatchError(
            f"{meta_file}: bundle made for feature_spec_version {version!r}, "
            f"installed hpo_env computes versions {list(FEATURE_SPEC_VERSIONS)}; use a bundle "
            "trained with this hpo-rl version (or retrain with `hpo-rl train`)"
        )
    try:
        space = HyperparameterSpace.from_dicts(meta["hparams"])
    except (TypeError, ValueError) as exc:
        raise BundleKeyError(f"{meta_file}: invalid 'hparams' entry ({exc})") from None
    expected_names = FeatureExtractor.feature_names(space, version)
    if list(meta["feature_names"]) != expected_names:
        diff = sorted(set(meta["feature_names"]) ^ set(expected_names))
        raise FeatureSpecMismatchError(
            f"{meta_file}: observation feature names differ from the installed feature code "
            f"(differing: {diff[:8]}, bundle has {len(meta['feature_names'])}, code has "
            f"{len(expected_names)}); retrain the bundle with this hpo-rl version"
        )
    if meta["activation"] not in ACTIVATIONS:
        raise BundleKeyError(
            f"{meta_file}: activation must be one of {list(ACTIVATIONS)}, got {meta['activation']!r}"
        )
    obs_dim, act_dim = len(expected_names), len(space)
    for key in ("mean", "var"):
        values = norm[key]
        if not isinstance(values, list) or len(values) != obs_dim:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise BundleShapeError(
                f"{norm_file}: {key!r} must be a list of {obs_dim} numbers, got {got}"
            )
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise BundleShapeError(f"{norm_file}: {key!r} must hold finite numbers")
    if any(v < 0 for v in norm["var"]):
        raise BundleShapeError(f"{norm_file}: 'var' must be >= 0")
    for key in ("clip_obs", "epsilon"):
        value = norm[key]
        if not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise BundleShapeError(
                f"{norm_file}: {key!r} must be a finite number > 0, got {value!r}"
            )

    net_arch = list(meta["net_arch"])
    expected: dict[str, tuple[int, ...]] = {}
    fan_in = obs_dim
    for i, width in enumerate(net_arch):
        expected[f"layers.{i}.weight"] = (int(width), fan_in)
        expected[f"layers.{i}.bias"] = (int(width),)
        fan_in = int(width)
    expected["action_mean.weight"] = (act_dim, fan_in)
    expected["action_mean.bias"] = (act_dim,)
    expected["log_std"] = (act_dim,)
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise BundleKeyError(f"{weights_file} lacks tensors {missing} (has {sorted(weights)})")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise BundleShapeError(
            f"{weights_file} has tensors {extra} that metadata net_arch={net_arch} does not explain"
        )
    for name, shape in expected.items():
        actual = tuple(weights[name].shape)
        if actual != shape:
            raise BundleShapeError(
                f"{weights_file}: tensor {name!r} has shape {actual}, metadata (net_arch={net_arch}, "
                f"{obs_dim} features, {act_dim} actions) implies {shape}"
            )
        if not torch.isfinite(weights[name]).all():
            raise BundleCorruptError(f"{weights_file}: tensor {name!r} holds non-finite values")
