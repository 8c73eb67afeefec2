"""The machine a number was measured on: one fingerprint for bundles, benches and reports.

Results are bit-reproducible only on the same kind of CPU with the same kernel
paths: MKL picks its transcendental kernels by CPU vendor (``MKL_CBWR``,
``MKL_ENABLE_INSTRUCTIONS`` override it) and ATen its vector width
(``ATEN_CPU_CAPABILITY``). The fingerprint records what decides those paths, so
a reader can tell whether two numbers should agree to the bit or only within
run-to-run noise.

Example:
    >>> fingerprint = machine_fingerprint()
    >>> sorted(fingerprint) == sorted(FINGERPRINT_KEYS)
    True
    >>> describe_platform(fingerprint).startswith("CPU: ")
    True
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

import torch

KERNEL_ENV_VARS = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")
"""Environment variables that change which CPU kernels MKL and ATen run."""

FINGERPRINT_KEYS = (
    "cpu_model",
    "cpu_vendor",
    "machine",
    "torch_version",
    "aten_cpu_capability",
    "mkl",
    "kernel_env",
    "torch_threads",
)
"""The keys of `machine_fingerprint`, in the order `describe_platform` reads them."""

_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}
_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x61": "Apple", "0xc0": "Ampere", "0x48": "HiSilicon"}


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first value of each field of ``/proc/cpuinfo`` (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_model(info: Mapping[str, str]) -> str:
    for key in ("model name", "Model Name", "Hardware", "cpu model"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_vendor(info: Mapping[str, str]) -> str:
    vendor = info.get("vendor_id", "")
    if vendor:
        return _VENDORS.get(vendor, vendor)
    implementer = info.get("CPU implementer", "").lower()
    if implementer:
        return _ARM_IMPLEMENTERS.get(implementer, f"ARM implementer {implementer}")
    model = _cpu_model(info).lower()
    for word, name in (("intel", "Intel"), ("amd", "AMD"), ("apple", "Apple"), ("arm", "ARM")):
        if word in model:
            return name
    return "unknown"


def _aten_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # very old torch builds
        return "unknown"


def machine_fingerprint(cpuinfo_path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """What decides whether a number reproduces here: CPU, torch, kernel paths, threads.

    Args:
        cpuinfo_path: where to read the CPU model and vendor (Linux); elsewhere
            `platform.processor` / `platform.machine` stand in.

    Returns:
        A JSON-able dict with the keys `FINGERPRINT_KEYS`: ``kernel_env`` holds
        only those of `KERNEL_ENV_VARS` that are set.
    """
    info = _cpuinfo(cpuinfo_path)
    return {
        "cpu_model": _cpu_model(info),
        "cpu_vendor": _cpu_vendor(info),
        "machine": platform.machine() or "unknown",
        "torch_version": str(torch.__version__),
        "aten_cpu_capability": _aten_capability(),
        "mkl": bool(torch.backends.mkl.is_available()),
        "kernel_env": {name: os.environ[name] for name in KERNEL_ENV_VARS if name in os.environ},
        "torch_threads": int(torch.get_num_threads()),
    }


def describe_platform(fingerprint: Mapping[str, Any] | None = None) -> str:
    """One line naming the CPU and the kernel paths (a bench's or report's header).

    Example:
        >>> describe_platform({"cpu_model": "AMD EPYC", "cpu_vendor": "AMD", "machine": "x86_64",
        ...     "torch_version": "2.13.0", "aten_cpu_capability": "AVX2", "mkl": True,
        ...     "kernel_env": {"MKL_CBWR": "COMPATIBLE"}, "torch_threads": 1})
        'CPU: AMD EPYC (AMD, x86_64); torch 2.13.0, ATen capability AVX2, MKL, 1 torch thread; MKL_CBWR=COMPATIBLE'
    """
    fp = machine_fingerprint() if fingerprint is None else fingerprint
    threads = fp.get("torch_threads", "?")
    line = (
        f"CPU: {fp.get('cpu_model', 'unknown CPU')} "
        f"({fp.get('cpu_vendor', 'unknown')}, {fp.get('machine', 'unknown')}); "
        f"torch {fp.get('torch_version', '?')}, "
        f"ATen capability {fp.get('aten_cpu_capability', '?')}, "
        f"{'MKL' if fp.get('mkl') else 'no MKL'}, "
        f"{threads} torch thread{'' if threads == 1 else 's'}"
    )
    env = fp.get("kernel_env") or {}
    if env:
        line += "; " + " ".join(f"{k}={v}" for k, v in sorted(env.items()))
    return line
