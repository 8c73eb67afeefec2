"""The policy bundle: round trip, atomic writes, and every loading error (fast)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from agents.policy import bundle as bundle_mod
from agents.policy.bundle import (
    FORMAT_VERSION,
    BundleContents,
    BundleCorruptError,
    BundleError,
    BundleJSONError,
    BundleKeyError,
    BundleNotFoundError,
    BundlePickleError,
    BundleShapeError,
    BundleVersionError,
    FeatureSpecMismatchError,
    atomic_write_bytes,
    read_bundle,
    write_bundle,
)
from agents.policy.tuning_policy import TuningPolicy
from hpo_env import FEATURE_SPEC_VERSION, FeatureExtractor, HyperparameterSpace


def make_contents(
    net_arch=(8, 8), hparams=("learning_rate", "entropy_coef"), seed=0
) -> BundleContents:
    space = HyperparameterSpace.from_names(hparams)
    d, k = FeatureExtractor.observation_size(space), len(space)
    g = torch.Generator().manual_seed(seed)
    weights, fan_in = {}, d
    for i, width in enumerate(net_arch):
        weights[f"layers.{i}.weight"] = torch.randn(width, fan_in, generator=g) * 0.3
        weights[f"layers.{i}.bias"] = torch.randn(width, generator=g) * 0.1
        fan_in = width
    weights["action_mean.weight"] = torch.randn(k, fan_in, generator=g) * 0.3
    weights["action_mean.bias"] = torch.zeros(k)
    weights["log_std"] = torch.full((k,), -0.5)
    normalization = {
        "mean": [0.1 * i for i in range(d)],
        "var": [1.0 + 0.05 * i for i in range(d)],
        "clip_obs": 10.0,
        "epsilon": 1e-8,
        "norm_obs": True,
    }
    metadata = {
        "format_version": FORMAT_VERSION,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": FeatureExtractor.feature_names(space),
        "hparams": space.to_dicts(),
        "net_arch": list(net_arch),
        "activation": "tanh",
        "control": {"decisions_per_run": 20, "updates_per_step": 5},
    }
    return BundleContents(weights=weights, normalization=normalization, metadata=metadata)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "bundle", make_contents())


def edit_json(path: Path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_round_trip(bundle_dir: Path):
    original = make_contents()
    loaded = read_bundle(bundle_dir)
    assert sorted(loaded.weights) == sorted(original.weights)
    for name, tensor in original.weights.items():
        assert torch.equal(loaded.weights[name], tensor)
    assert loaded.normalization["mean"] == original.normalization["mean"]
    assert sorted(os.listdir(bundle_dir)) == sorted(bundle_mod.BUNDLE_FILES)


def test_errors_are_value_errors_naming_the_file(bundle_dir: Path):
    (bundle_dir / "normalization.json").write_text("{not json")
    with pytest.raises(BundleJSONError, match=r"normalization.json") as info:
        read_bundle(bundle_dir)
    assert isinstance(info.value, BundleError) and isinstance(info.value, ValueError)


def test_missing_directory(tmp_path: Path):
    with pytest.raises(BundleNotFoundError, match="does not exist"):
        read_bundle(tmp_path / "nope")


@pytest.mark.parametrize("name", ["policy.safetensors", "metadata.json", "normalization.json"])
def test_missing_file(bundle_dir: Path, name: str):
    (bundle_dir / name).unlink()
    with pytest.raises(BundleNotFoundError, match=name):
        read_bundle(bundle_dir)


def test_truncated_safetensors(bundle_dir: Path):
    path = bundle_dir / "policy.safetensors"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(BundleCorruptError, match=r"policy.safetensors"):
        read_bundle(bundle_dir)


def test_garbage_safetensors(bundle_dir: Path):
    (bundle_dir / "policy.safetensors").write_bytes(
        b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage-header}"
    )
    with pytest.raises(BundleCorruptError, match=r"policy.safetensors"):
        read_bundle(bundle_dir)


def test_invalid_json(bundle_dir: Path):
    (bundle_dir / "metadata.json").write_text('{"format_version": 1,')
    with pytest.raises(BundleJSONError, match=r"metadata.json"):
        read_bundle(bundle_dir)


def test_missing_keys(bundle_dir: Path):
    data = json.loads((bundle_dir / "metadata.json").read_text())
    del data["net_arch"]
    (bundle_dir / "metadata.json").write_text(json.dumps(data))
    with pytest.raises(BundleKeyError, match="net_arch"):
        read_bundle(bundle_dir)


def test_newer_format_version(bundle_dir: Path):
    edit_json(bundle_dir / "metadata.json", format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleVersionError, match="newer"):
        read_bundle(bundle_dir)


def test_feature_spec_version_mismatch(bundle_dir: Path):
    edit_json(bundle_dir / "metadata.json", feature_spec_version=FEATURE_SPEC_VERSION + 1)
    with pytest.raises(FeatureSpecMismatchError, match="feature_spec_version"):
        read_bundle(bundle_dir)


def test_feature_names_mismatch(bundle_dir: Path):
    names = json.loads((bundle_dir / "metadata.json").read_text())["feature_names"]
    names[0] = "something_else"
    edit_json(bundle_dir / "metadata.json", feature_names=names)
    with pytest.raises(FeatureSpecMismatchError, match="feature names"):
        read_bundle(bundle_dir)


def test_shape_mismatch(bundle_dir: Path):
    weights = dict(make_contents().weights)
    weights["layers.1.weight"] = torch.zeros(8, 7)
    save_file(weights, str(bundle_dir / "policy.safetensors"))
    with pytest.raises(BundleShapeError, match=r"layers\.1\.weight"):
        read_bundle(bundle_dir)


def test_normalization_shape_mismatch(bundle_dir: Path):
    edit_json(bundle_dir / "normalization.json", mean=[0.0, 1.0])
    with pytest.raises(BundleShapeError, match=r"normalization.json"):
        read_bundle(bundle_dir)


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_payload_is_refused_and_never_run(bundle_dir: Path, tmp_path: Path, protocol: int):
    marker = tmp_path / "pwned"
    (bundle_dir / "policy.safetensors").write_bytes(
        pickle.dumps(_Payload(marker), protocol=protocol)
    )
    with pytest.raises(BundlePickleError, match="pickle"):
        TuningPolicy.load(bundle_dir)
    assert not marker.exists()


def test_torch_save_archive_is_refused(bundle_dir: Path, tmp_path: Path):
    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(marker)}, bundle_dir / "policy.safetensors")
    with pytest.raises(BundlePickleError):
        read_bundle(bundle_dir)
    assert not marker.exists()


def test_atomic_write_keeps_previous_file_on_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old contents")

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(bundle_mod.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["file.bin"]  # the temp file was cleaned up


def test_bundle_write_crash_leaves_previous_bundle_loadable(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("killed mid-write")
        return real_replace(src, dst)

    monkeypatch.setattr(bundle_mod.os, "replace", crash_on_second)
    # Same architecture, other weights: the first file lands, then the crash.
    with pytest.raises(OSError):
        write_bundle(bundle_dir, make_contents(seed=1))
    monkeypatch.setattr(bundle_mod.os, "replace", real_replace)
    for name in ("normalization.json", "metadata.json"):
        json.loads((bundle_dir / name).read_text())  # intact, parseable
    read_bundle(bundle_dir)


def test_write_validates_before_touching_disk(tmp_path: Path):
    contents = make_contents()
    contents.weights["log_std"] = torch.zeros(5)
    with pytest.raises(BundleShapeError):
        write_bundle(tmp_path / "b", contents)
    assert not (tmp_path / "b").exists()
