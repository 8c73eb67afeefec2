"""Regenerate the README's measured numbers: run the benches and the evaluations,
then rewrite the README blocks between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` from what they printed and wrote.

No number in those blocks is typed by hand, so the README cannot drift from what
the code reproduces. Each block records the command, the date and the git revision.

Usage::

    python scripts/update_readme_numbers.py                 # every block (~40 min on 2 cores)
    python scripts/update_readme_numbers.py --only speed    # one block
    python scripts/update_readme_numbers.py --dry-run       # print the blocks, leave README alone
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
OUT = REPO / "runs" / "readme"
HPO_RL = [sys.executable, "-m", "agents.cli"]
KEY_VALUE = re.compile(r"\b([a-z][a-z0-9_]*)=(-?[0-9][0-9.eE+-]*)")


def run(args: list[str]) -> str:
    """Run ``hpo-rl ARGS`` in the repository; its stdout (stderr passes through)."""
    print(f"$ hpo-rl {shlex.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run([*HPO_RL, *args], cwd=REPO, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


METRIC_WORDS = ("speedup", "overhead", "per_s", "_us", "interval")
"""Printed keys that are measurements (the benches also print their settings as key=value)."""


def key_values(text: str) -> dict[str, str]:
    """Every measured ``key=number`` a bench printed (the last one wins)."""
    return {k: v for k, v in KEY_VALUE.findall(text) if any(w in k for w in METRIC_WORDS)}


def speed_block() -> str:
    rows = []
    for bench in ("engine", "control", "overhead"):
        values = key_values(run(["bench", bench]))
        shown = ", ".join(f"`{k}={v}`" for k, v in values.items())
        rows.append(f"| `hpo-rl bench {bench}` | {shown} |")
    return "| Command | Printed ratios and rates |\n|---|---|\n" + "\n".join(rows)


def markdown_tables(path: Path) -> str:
    """The tables and their headings from a results.md (prose and the title dropped)."""
    lines = path.read_text().splitlines()
    kept = [ln for ln in lines if ln.startswith(("|", "## ", "[", "- "))]
    # A heading with nothing kept under it (the figures' section) is dropped.
    kept = [
        ln
        for i, ln in enumerate(kept)
        if not ln.startswith("## ") or (i + 1 < len(kept) and not kept[i + 1].startswith("## "))
    ]
    # The report's sections sit under a README subsection: two levels down.
    return "\n".join("#### " + ln[3:] if ln.startswith("## ") else ln for ln in kept)


def benchmark_block() -> str:
    out = OUT / "benchmark"
    run(["benchmark", "--out", str(out), "--no-progress"])
    return markdown_tables(out / "results.md")


TRANSFER_SEEDS = 5
"""Seeds per test task in the README (the protocol's default)."""
TRANSFER_WORKERS = 2
"""Local processes for the transfer runs (the numbers do not depend on it)."""


def transfer_block() -> str:
    # runs/transfer-test/runs.jsonl caches finished runs: a rerun only trains what changed
    # (a new bundle re-runs the policy's arms, the baselines are reused).
    out = REPO / "runs" / "transfer-test"
    run([
        "transfer", "--split", "test", "--seeds", str(TRANSFER_SEEDS),
        "--workers", str(TRANSFER_WORKERS), "--out", str(out), "--no-progress",
    ])  # fmt: skip
    copy_transfer_figures(out)
    return markdown_tables(out / "results.md")


def copy_transfer_figures(out: Path) -> None:
    """The README's transfer figures: wins/ties/losses, robustness, and the learning curves
    of the worst and the best task (first and last rows of the per-task table)."""
    per_task = json.loads((out / "results.json").read_text())["summary"]["per_task"]
    figures = {
        "transfer_win_tie_loss.png": "win_tie_loss.png",
        "transfer_robustness.png": "robustness.png",
        "transfer_worst_task.png": f"curves_{per_task[0]['task']}.png",
        "transfer_best_task.png": f"curves_{per_task[-1]['task']}.png",
    }
    DOCS.mkdir(exist_ok=True)
    for target, source in figures.items():
        shutil.copyfile(out / source, DOCS / target)


BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "speed": ("hpo-rl bench engine|control|overhead", speed_block),
    "benchmark": ("hpo-rl benchmark", benchmark_block),
    "transfer": (f"hpo-rl transfer --split test --seeds {TRANSFER_SEEDS}", transfer_block),
}


def git_revision() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    return done.stdout.strip() or "unknown"


def replace_block(readme: str, name: str, body: str) -> str:
    """``readme`` with the block ``name`` replaced by ``body``."""
    pattern = re.compile(
        rf"(<!-- generated:{name} -->\n).*?(\n<!-- /generated:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(readme):
        raise SystemExit(
            f"README.md has no block '{name}': add the two lines "
            f"'<!-- generated:{name} -->' and '<!-- /generated:{name} -->' where it belongs"
        )
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BLOCKS), default=sorted(BLOCKS))
    parser.add_argument("--dry-run", action="store_true", help="print, do not write README.md")
    args = parser.parse_args(argv)
    stamp = f"{dt.date.today().isoformat()}, git {git_revision()}"
    bodies = {}
    for name in args.only:
        command, make = BLOCKS[name]
        bodies[name] = (
            make()
            + f"\n\n<sub>Generated by `{command}` via `python scripts/update_readme_numbers.py` ({stamp}).</sub>"
        )
        if args.dry_run:
            print(f"--- {name}\n{bodies[name]}")
    # Read the README only now: the commands take minutes, and edits made meanwhile must survive.
    readme = README.read_text()
    for name, body in bodies.items():
        readme = replace_block(readme, name, body)
    if not args.dry_run:
        README.write_text(readme)
        print(f"rewrote {', '.join(args.only)} in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
