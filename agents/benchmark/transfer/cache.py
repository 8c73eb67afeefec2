"""The transfer protocol's resume cache: ``<out_dir>/runs.jsonl``, one finished run a line.

A run's key names everything its numbers depend on: the task spec, the method
(label, ``repr``, start-rate multiple), the seed, the code that trains it
(`code_revision`) and, for the policy's runs, the bundle (`policy_fingerprint`:
weights, observation normalisation and metadata). A change of code, prior or
bundle therefore reruns the affected runs instead of reusing stale ones.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

from agents.benchmark.transfer.loop import RunResult

CODE_PACKAGES = ("hpo_env", "tasks", "agents")
"""Packages whose source files make up `code_revision`."""
BUNDLE_FILES = ("policy.safetensors", "normalization.json", "metadata.json")
"""Files of a bundle that make up `policy_fingerprint` (all of a bundle's contents)."""


@functools.cache
def code_revision(packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """A hash of every ``.py`` file of ``packages`` (paths and contents).

    Read from wherever the packages are imported from, so it needs no git and works
    the same from a checkout, an editable install or an installed wheel; any edit of
    the code (a loop, a schedule, the prior) changes it. Computed once per process.
    """
    digest = hashlib.sha1()
    for name in packages:
        module = importlib.import_module(name)
        for root in getattr(module, "__path__", []):
            base = Path(root)
            for path in sorted(base.rglob("*.py")):
                digest.update(f"{name}/{path.relative_to(base).as_posix()}\0".encode())
                digest.update(path.read_bytes())
                digest.update(b"\0")
    return digest.hexdigest()[:16]


def policy_fingerprint(ref: str) -> str:
    """Hash of the bundle's weights, normalisation and metadata, so that a retrained or
    re-described bundle never reuses cached runs."""
    try:
        from agents.policy.tuning_policy import resolve_bundle_path

        path = resolve_bundle_path(ref)
        digest = hashlib.sha1()
        for name in BUNDLE_FILES:
            file = path / name
            digest.update(f"{name}\0".encode())
            digest.update(file.read_bytes() if file.exists() else b"<absent>")
        # An ensemble's members (agents.policy.ensemble) are bundles in subfolders.
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.parent != path):
            digest.update(f"{file.relative_to(path).as_posix()}\0".encode())
            digest.update(file.read_bytes())
        return digest.hexdigest()[:16]
    except Exception:  # an unloadable bundle fails later with its own clear error
        return str(ref)


def cache_key(
    task: Any, label: str, method: Any, multiplier: float, seed: int, fingerprint: str, code: str
) -> str:
    """The key of one run (``fingerprint`` is empty for runs that do not use the policy)."""
    identity = json.dumps(
        [dataclasses.asdict(task), label, repr(method), multiplier, seed, fingerprint, code],
        sort_keys=True,
    )
    return hashlib.sha1(identity.encode()).hexdigest()


def read_cache(path: Path) -> dict[str, Any]:
    """key -> run result (as JSON) of every complete line of ``path``."""
    if not path.exists():
        return {}
    cache = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: that run simply runs again
        cache[record["key"]] = record["result"]
    return cache


def append_cache(path: Path, key: str, result: RunResult) -> None:
    """Append one finished run."""
    append_record(path, key, result.to_json())


def append_record(path: Path, key: str, result: Any) -> None:
    """Append one finished run's JSON-serialisable ``result`` under ``key``."""
    # Appending one line per run (not an atomic rewrite) is what makes a killed
    # run resumable; a torn last line is skipped by `read_cache`.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"key": key, "result": result}) + "\n")
