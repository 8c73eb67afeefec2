"""The one report writer of every protocol: ``results.json``, ``results.md`` and the figures.

Each protocol (held-out `agents.benchmark.report`, transfer
`agents.benchmark.transfer.report`) supplies its Markdown and a function drawing
its figures; this module writes them. Every file goes to a temporary name first
and is moved into place (`agents.common.files`), so an interrupted run never
leaves a half-written file; ``results.json`` is strict JSON (NaN and inf as null).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agents.common.files import atomic_write_json, atomic_write_text, json_safe
from agents.common.platform import describe_platform, machine_fingerprint

FigureWriter = Callable[[Path], Mapping[str, Path]]
"""``draw(out_dir) -> {file name: path}``: writes a protocol's figures into ``out_dir``."""


def write_report_files(
    out_dir: str | os.PathLike[str],
    result: Mapping[str, Any],
    markdown: str,
    figures: FigureWriter | None = None,
) -> dict[str, Path]:
    """Write ``results.json`` (``result``), ``results.md`` (``markdown``) and the figures.

    Both files name the machine: ``results.json`` gets a ``"platform"`` entry
    (`agents.common.platform.machine_fingerprint`, unless ``result`` has one) and
    ``results.md`` a line naming the CPU under its title.

    Returns:
        name -> path of every file written.
    """
    out = Path(out_dir)
    # The machine that measured (kept when re-writing a stored result): numbers
    # reproduce to the bit only on the same CPU kind and kernel path.
    platform = result.get("platform") or machine_fingerprint()
    result = {**result, "platform": platform}
    files = {
        "results.json": atomic_write_json(out / "results.json", json_safe(result)),
        "results.md": atomic_write_text(out / "results.md", with_platform_line(markdown, platform)),
    }
    if figures is not None:
        files.update(figures(out))
    return files


def with_platform_line(markdown: str, platform: Mapping[str, Any]) -> str:
    """``markdown`` with a line naming the machine after its title (first, if it has none)."""
    line = (
        f"Measured on {describe_platform(platform)}. Numbers repeat to the bit only on the "
        "same CPU kind, torch version and kernel path; on another they can move."
    )
    lines = markdown.splitlines(keepends=True)
    if lines and lines[0].startswith("# "):
        return "".join([lines[0], "\n", line, "\n", *lines[1:]])
    return line + "\n\n" + markdown
