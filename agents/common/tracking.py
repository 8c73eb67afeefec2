"""Weights & Biases tracking: the one module of the package that imports wandb.

`Tracker` wraps one wandb run and never lets a tracking fault stop training:

- at start, ``online`` falls back to ``offline`` (no API key, server
  unreachable, init error), and ``offline`` falls back to ``disabled``
  (unwritable directory, init error), each with one warning;
- during the run, the first exception from a log / artifact call warns once
  and turns tracking off for the rest of the run.

``disabled`` never imports wandb. The small ``log_to_run`` / ``line_plot`` /
``log_table_to_run`` helpers let other modules (the deployed scheduler, the
benchmark) log onto a user-supplied wandb run object without importing wandb
themselves.

Example:
    >>> tracker = Tracker()
    >>> tracker.start({"seed": 0}, mode="disabled", project="hpo-rl", dir="runs/x")
    >>> tracker.log({"loss": 1.0}, step=0)
    >>> tracker.finish()
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import tempfile
import urllib.parse
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MODES = ("online", "offline", "disabled")
RUN_ID_FILE = "wandb_run_id"
"""File in a run directory holding the wandb run id, so a resumed run continues it."""
DEFAULT_BASE_URL = "https://api.wandb.ai"
REACHABILITY_TIMEOUT_S = 3.0
"""How long an online start waits for a TCP connection to the server before
falling back to offline (wandb's own retries would take tens of seconds)."""


class TrackingWarning(UserWarning):
    """Tracking degraded (fell back to offline or disabled); training goes on."""


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        from hpo_env.errors import unknown_name_error

        raise unknown_name_error("wandb mode", mode, list(MODES))
    return mode


def _dir_writable(path: Path) -> str | None:
    """None if ``path`` can be created and written, else the reason."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or "wandb" in netrc.read_text()
    except OSError:
        return False


def _server_reachable(base_url: str, timeout: float = REACHABILITY_TIMEOUT_S) -> str | None:
    """None if a TCP connection to the wandb server opens, else the reason."""
    parsed = urllib.parse.urlparse(base_url)
    host = parsed.hostname
    if not host:
        return f"cannot parse WANDB_BASE_URL={base_url!r}"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc})"


def persistent_run_id(run_dir: str | os.PathLike[str]) -> str:
    """The wandb run id of ``run_dir``: the one stored there, or a new one stored now.

    Written before wandb starts, so a run killed at any moment resumes under the
    same id (``wandb.init(id=..., resume="allow")``); offline runs of one id
    then sync into one online run.
    """
    from agents.common.files import atomic_write_text

    path = Path(run_dir) / RUN_ID_FILE
    with contextlib.suppress(OSError):
        stored = path.read_text().strip()
        if stored.isalnum():
            return stored
    run_id = secrets.token_hex(4)  # wandb's own ids are 8 lowercase alphanumerics too
    with contextlib.suppress(OSError):  # an unwritable dir: tracking degrades later anyway
        atomic_write_text(path, run_id + "\n")
    return run_id


class Tracker:
    """One experiment-tracking run that degrades instead of failing.

    Attributes:
        mode: the mode actually in use after any fallback ("disabled" until `start`).
        run: the wandb run object, or None when disabled.
    """

    def __init__(self) -> None:
        self.mode = "disabled"
        self.run: Any = None
        self.dir: Path | None = None
        self._warned = False
        self._fallbacks: list[str] = []

    @property
    def active(self) -> bool:
        return self.run is not None

    @property
    def run_dir(self) -> Path | None:
        """The local run directory wandb writes (offline: ``wandb/offline-run-*``)."""
        if self.run is None:
            return None
        with contextlib.suppress(Exception):
            return Path(self.run.dir).parent
        return None

    def _warn(self, message: str) -> None:
        # One warning per tracker: a failing backend would otherwise warn every step.
        self._fallbacks.append(message)
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"wandb tracking: {message}; training continues", TrackingWarning, stacklevel=3
            )

    def start(
        self,
        config: Mapping[str, Any],
        mode: str = "offline",
        project: str = "hpo-rl",
        dir: str | os.PathLike[str] = ".",
        name: str | None = None,
        **init_kwargs: Any,
    ) -> Tracker:
        """Start a run, falling back online -> offline -> disabled on any fault.

        Args:
            config: the full run configuration (logged as wandb config).
            mode: "offline" (default, no account), "online" or "disabled". A
                ``WANDB_MODE`` environment variable may lower it (online ->
                offline -> disabled), never raise it.
            project: wandb project.
            dir: parent of the ``wandb/`` directory the run writes.
            name: run name (None: wandb picks one).
            **init_kwargs: passed to ``wandb.init`` (e.g. ``group``, ``tags``; ``id``
                with ``resume="allow"`` to continue a run, see `persistent_run_id`).
        """
        _check_mode(mode)
        self.dir = Path(dir)
        env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
        if env_mode in MODES and MODES.index(env_mode) > MODES.index(mode):
            # The environment may only lower the mode (e.g. CI's WANDB_MODE=disabled),
            # never take a run online that was configured offline.
            mode = env_mode
        if mode == "disabled":
            self.mode = "disabled"
            return self
        chain = ["online", "offline"] if mode == "online" else ["offline"]
        for attempt in chain:
            reason = self._precheck(attempt)
            if reason is None:
                reason = self._init(attempt, dict(config), project, name, init_kwargs)
            if reason is None:
                self.mode = attempt
                return self
            fallback = "offline" if attempt == "online" else "disabled"
            self._warn(f"{attempt} mode failed ({reason}); falling back to {fallback}")
        self.mode = "disabled"
        return self

    def _precheck(self, mode: str) -> str | None:
        assert self.dir is not None
        problem = _dir_writable(self.dir)
        if problem is not None:
            return f"run directory {self.dir} is not writable ({problem})"
        if mode == "online":
            if not _has_api_key():
                return "no API key (set WANDB_API_KEY or run `wandb login`)"
            base_url = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
            return _server_reachable(base_url)
        return None

    def _init(
        self,
        mode: str,
        config: dict[str, Any],
        project: str,
        name: str | None,
        init_kwargs: dict[str, Any],
    ) -> str | None:
        try:
            import wandb
        except ModuleNotFoundError:
            self.run = None
            return 'wandb is not installed (pip install "hpo-rl[train]")'
        try:
            settings = wandb.Settings(
                console="off",  # leave stdout/stderr (and the progress bar) alone
                init_timeout=60,
                x_disable_stats=True,
                disable_git=True,
                save_code=False,
            )
            self.run = wandb.init(
                mode=mode,  # type: ignore[arg-type]  # checked against MODES
                project=project,
                dir=str(self.dir),
                name=name,
                config=config,
                settings=settings,
                reinit="create_new",
                **init_kwargs,
            )
        except Exception as exc:
            self.run = None
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.run is None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self._warn(
                f"{what} failed ({type(exc).__name__}: {exc}); tracking is off for the rest of this run"
            )
            self._shutdown()
            return None

    def _shutdown(self) -> None:
        run, self.run, self.mode = self.run, None, "disabled"
        if run is not None:
            with contextlib.suppress(Exception):
                run.finish(exit_code=1, quiet=True)

    # -- logging ------------------------------------------------------------------

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log scalar metrics at ``step`` (steps must not decrease)."""
        if self.run is None or not metrics:
            return
        self._call("log", self.run.log, dict(metrics), step=step)

    def summary(self, values: Mapping[str, Any]) -> None:
        """Set run summary values (the numbers shown in the runs table)."""
        if self.run is not None:
            self._call("summary update", self.run.summary.update, dict(values))

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str,
        type: str = "model",
        metadata: Mapping[str, Any] | None = None,
        aliases: Sequence[str] = (),
    ) -> None:
        """Log a file or directory as a versioned wandb Artifact."""
        if self.run is None:
            return

        def _log() -> None:
            import wandb

            artifact = wandb.Artifact(name, type=type, metadata=dict(metadata or {}))
            target = Path(path)
            if target.is_dir():
                artifact.add_dir(str(target))
            else:
                artifact.add_file(str(target))
            self.run.log_artifact(artifact, aliases=list(aliases) or None)

        self._call("log_artifact", _log)

    def log_image(self, key: str, path: str | os.PathLike[str], step: int | None = None) -> None:
        if self.run is None:
            return

        def _log() -> None:
            import wandb

            self.run.log({key: wandb.Image(str(path))}, step=step)

        self._call("log_image", _log)

    def log_table(
        self,
        key: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        step: int | None = None,
    ) -> None:
        if self.run is not None:
            self._call("log_table", log_table_to_run, self.run, key, columns, rows, step)

    def finish(self) -> None:
        """End the run (flushes offline files); safe to call more than once."""
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish()
            except Exception as exc:
                self._warn(f"finish failed ({type(exc).__name__}: {exc})")

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


# -- helpers for user-supplied runs (no wandb import needed by callers) -----------


def _log_kwargs(step: int | None, commit: bool | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"step": step}
    if commit is not None:  # only when asked: wandb's own default otherwise
        kwargs["commit"] = commit
    return kwargs


def log_to_run(
    run: Any, metrics: Mapping[str, Any], step: int | None = None, commit: bool | None = None
) -> bool:
    """``run.log(metrics, step=step, commit=commit)`` that never raises; returns whether it worked.

    ``run`` may be None (nothing is logged). ``commit=False`` adds the metrics to
    the run's current row without creating a step (they are written with the
    caller's next committed ``log``, or when the run finishes).
    """
    if run is None or not metrics:
        return False
    try:
        run.log(dict(metrics), **_log_kwargs(step, commit))
    except Exception as exc:
        warnings.warn(
            f"wandb tracking: log failed ({type(exc).__name__}: {exc})",
            TrackingWarning,
            stacklevel=2,
        )
        return False
    return True


def log_table_to_run(
    run: Any,
    key: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    step: int | None = None,
) -> None:
    """Log a table onto ``run`` (raises on wandb errors; `Tracker.log_table` guards it)."""
    import wandb

    table = wandb.Table(columns=list(columns), data=[list(r) for r in rows])
    run.log({key: table}, step=step)


def line_plot(
    run: Any,
    key: str,
    xs: Sequence[float],
    ys: Sequence[float] | Mapping[str, Sequence[float]],
    title: str = "",
    xname: str = "x",
    step: int | None = None,
    commit: bool | None = None,
) -> bool:
    """A line plot on ``run``: one line (``ys`` a sequence) or several (a mapping
    of line name to values). Never raises; returns whether it worked."""
    if run is None:
        return False
    try:
        import wandb

        if isinstance(ys, Mapping):
            names = list(ys)
            plot = wandb.plot.line_series(
                xs=list(xs), ys=[list(ys[n]) for n in names], keys=names, title=title, xname=xname
            )
        else:
            table = wandb.Table(data=[[x, y] for x, y in zip(xs, ys)], columns=[xname, key])
            plot = wandb.plot.line(table, xname, key, title=title)
        run.log({key: plot}, **_log_kwargs(step, commit))
    except Exception as exc:
        warnings.warn(
            f"wandb tracking: line plot failed ({type(exc).__name__}: {exc})",
            TrackingWarning,
            stacklevel=2,
        )
        return False
    return True


# -- offline runs, as `wandb sync` reads them ------------------------------------

_WANDB_MAGIC = b":W&B"
_BLOCK = 32768  # the transaction log's block size (LevelDB's log format)


def _log_records(path: Path) -> list[bytes]:
    """The records of one ``run-<id>.wandb`` transaction log (LevelDB log format:
    7-byte header, then 32 KiB blocks of chunks with a 7-byte header each)."""
    data = path.read_bytes()
    if data[:4] != _WANDB_MAGIC:
        raise ValueError(f"{path} is not a wandb transaction log (no {_WANDB_MAGIC!r} header)")
    out: list[bytes] = []
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0 and length == 0:
            break  # zero fill: the writer stopped here (e.g. killed)
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # a whole record
            out.append(chunk)
        elif kind == 2:  # first, middle, last pieces of a record spanning blocks
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            out.append(pending + chunk)
            pending = b""
    return out


def offline_run_history(root: str | os.PathLike[str], run_id: str) -> list[list[dict[str, Any]]]:
    """The history rows of every offline folder of run ``run_id`` under ``root/wandb``,
    one list per folder, in the order ``wandb sync`` uploads them (by start time).

    A killed and resumed offline run (``hpo-rl train --resume``) leaves one
    ``offline-run-*-<id>`` folder per start; ``wandb sync <root>/wandb/offline-run-*``
    uploads them, in this order, into the one run ``run_id`` (rows whose step is not
    above the last one uploaded are dropped by W&B, as for any resumed run).
    Each row maps metric names to values, with ``_step``.
    """
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    runs: list[tuple[float, list[dict[str, Any]]]] = []
    for log in Path(root).glob(f"wandb/offline-run-*-{run_id}*/run-{run_id}.wandb"):
        start, rows = 0.0, []
        for data in _log_records(log):
            record = pb.Record()  # type: ignore[attr-defined]
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                start = record.run.start_time.seconds + record.run.start_time.nanos * 1e-9
            elif kind == "history":
                rows.append(
                    {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                )
        runs.append((start, rows))
    return [rows for _, rows in sorted(runs, key=lambda r: r[0])]
