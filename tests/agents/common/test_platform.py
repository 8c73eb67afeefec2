"""The machine fingerprint: CPU model and vendor, torch, ATen capability, kernel env vars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agents.common.platform import (
    FINGERPRINT_KEYS,
    KERNEL_ENV_VARS,
    describe_platform,
    machine_fingerprint,
)

INTEL_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: fpu avx512f

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480C
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def test_reads_model_and_vendor_from_cpuinfo(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(INTEL_CPUINFO)
    fp = machine_fingerprint(str(path))
    assert fp["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480C"
    assert fp["cpu_vendor"] == "Intel"


def test_arm_cpuinfo_names_the_implementer(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(ARM_CPUINFO)
    fp = machine_fingerprint(str(path))
    assert fp["cpu_vendor"] == "ARM"
    assert fp["cpu_model"]  # falls back to the platform's processor / machine string


def test_without_cpuinfo_falls_back_to_the_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platform

    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    fp = machine_fingerprint(str(tmp_path / "missing"))
    assert fp["cpu_model"] == "arm64"
    assert fp["machine"] == "arm64"
    assert fp["cpu_vendor"] == "ARM"


def test_records_torch_capability_threads_and_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KERNEL_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    fp = machine_fingerprint()
    assert set(fp) == set(FINGERPRINT_KEYS)
    assert fp["torch_version"] == torch.__version__
    assert fp["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert fp["torch_threads"] == torch.get_num_threads()
    assert fp["kernel_env"] == {}
    assert json.loads(json.dumps(fp)) == fp


def test_kernel_env_vars_recorded_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KERNEL_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.setenv("UNRELATED_VAR", "1")
    fp = machine_fingerprint()
    assert fp["kernel_env"] == {"MKL_CBWR": "COMPATIBLE"}
    assert "MKL_CBWR=COMPATIBLE" in describe_platform(fp)


def test_description_names_cpu_torch_and_capability() -> None:
    fp = {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480C",
        "cpu_vendor": "Intel",
        "machine": "x86_64",
        "torch_version": "9.9.9",
        "aten_cpu_capability": "AVX512",
        "mkl": True,
        "kernel_env": {},
        "torch_threads": 4,
    }
    line = describe_platform(fp)
    assert "\n" not in line
    for text in ("Intel(R) Xeon(R) Platinum 8480C", "9.9.9", "AVX512", "4 torch threads"):
        assert text in line


def test_description_tolerates_an_older_partial_record() -> None:
    line = describe_platform({"cpu_model": "AMD EPYC"})
    assert line.startswith("CPU: AMD EPYC")
