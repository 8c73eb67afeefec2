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

FigureWriter = Callable[[Path], Mapping[str, Path]]
"""``draw(out_dir) -> {file name: path}``: writes a protocol's figures into ``out_dir``."""


def write_report_files(
    out_dir: str | os.PathLike[str],
    result: Mapping[str, Any],
    markdown: str,
    figures: FigureWriter | None = None,
) -> dict[str, Path]:
    """Write ``results.json`` (``result``), ``results.md`` (``markdown``) and the figures.

    Returns:
        name -> path of every file written.
    """
    out = Path(out_dir)
    files = {
        "results.json": atomic_write_json(out / "results.json", json_safe(dict(result))),
        "results.md": atomic_write_text(out / "results.md", markdown),
    }
    if figures is not None:
        files.update(figures(out))
    return files
