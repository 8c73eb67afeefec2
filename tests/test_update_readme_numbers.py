"""`scripts/update_readme_numbers.py`: blocks are replaced in place, bench output parsed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "update_readme_numbers.py"
spec = importlib.util.spec_from_file_location("update_readme_numbers", SCRIPT)
assert spec is not None and spec.loader is not None
numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(numbers)


def test_replace_block_keeps_everything_else():
    text = "a\n<!-- generated:speed -->\nold\n<!-- /generated:speed -->\nb\n"
    assert numbers.replace_block(text, "speed", "new\nrows") == (
        "a\n<!-- generated:speed -->\nnew\nrows\n<!-- /generated:speed -->\nb\n"
    )
    with pytest.raises(SystemExit, match="no block 'transfer'"):
        numbers.replace_block(text, "transfer", "x")


def test_key_values_reads_what_the_benches_print():
    out = "engine_speedup_b64=12.96 env_overhead=0.361 d=31\nnot=a number\ndeploy_overhead=-0.007 (median)"
    assert numbers.key_values(out) == {
        "engine_speedup_b64": "12.96",
        "env_overhead": "0.361",
        "deploy_overhead": "-0.007",
    }


def test_the_readme_has_every_block():
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    for name in numbers.BLOCKS:
        assert f"<!-- generated:{name} -->" in readme and f"<!-- /generated:{name} -->" in readme


def test_transfer_figures_are_the_worst_and_best_task(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    per_task = [{"task": "worst_one"}, {"task": "middle"}, {"task": "best_one"}]
    (out / "results.json").write_text(json.dumps({"summary": {"per_task": per_task}}))
    for name in (
        "win_tie_loss",
        "robustness",
        "curves_worst_one",
        "curves_middle",
        "curves_best_one",
    ):
        (out / f"{name}.png").write_bytes(name.encode())
    monkeypatch.setattr(numbers, "DOCS", tmp_path / "docs")
    numbers.copy_transfer_figures(out)
    docs = tmp_path / "docs"
    assert (docs / "transfer_worst_task.png").read_bytes() == b"curves_worst_one"
    assert (docs / "transfer_best_task.png").read_bytes() == b"curves_best_one"
    assert (docs / "transfer_win_tie_loss.png").read_bytes() == b"win_tie_loss"
    assert (docs / "transfer_robustness.png").read_bytes() == b"robustness"
