"""Benchmark reports (``hpo-rl benchmark``, ``hpo-rl transfer``) name the machine that measured."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from agents.benchmark.report_files import write_report_files
from agents.common.platform import FINGERPRINT_KEYS, machine_fingerprint

MARKDOWN = (
    "# Held-out benchmark of the tuning policy\n\n| Method | IQM |\n|---|---:|\n| policy | 1.0 |\n"
)


def test_results_json_and_md_name_the_cpu(tmp_path: Path) -> None:
    files = write_report_files(tmp_path, {"summary": {"n": 1}}, MARKDOWN)
    data = json.loads(files["results.json"].read_text())
    assert data["summary"] == {"n": 1}
    assert set(data["platform"]) == set(FINGERPRINT_KEYS)
    assert data["platform"]["torch_version"] == torch.__version__
    lines = files["results.md"].read_text().splitlines()
    assert lines[0] == "# Held-out benchmark of the tuning policy"  # the title stays first
    cpu = machine_fingerprint()["cpu_model"]
    near_top = "\n".join(lines[:4])
    assert cpu in near_top and torch.backends.cpu.get_cpu_capability() in near_top
    assert "| policy | 1.0 |" in lines  # the report itself is untouched


def test_a_stored_platform_is_kept(tmp_path: Path) -> None:
    stored = {**machine_fingerprint(), "cpu_model": "Intel(R) Xeon(R) Platinum 8480C"}
    files = write_report_files(tmp_path, {"platform": stored}, "no title\n")
    assert json.loads(files["results.json"].read_text())["platform"] == stored
    text = files["results.md"].read_text()
    assert text.splitlines()[0].startswith("Measured on CPU: Intel(R) Xeon(R) Platinum 8480C")
    assert text.endswith("no title\n")


def test_the_callers_result_is_not_modified(tmp_path: Path) -> None:
    result = {"summary": {}}
    write_report_files(tmp_path, result, MARKDOWN)
    assert result == {"summary": {}}
