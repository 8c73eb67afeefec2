"""`agents.tracking`: disabled needs nothing, offline writes a run directory,
faults warn once and never raise."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from agents.common.tracking import Tracker, TrackingWarning, line_plot, log_to_run


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """wandb's every directory inside tmp_path, quiet, never online by accident."""
    for var in (
        "WANDB_DIR",
        "WANDB_CACHE_DIR",
        "WANDB_CONFIG_DIR",
        "WANDB_DATA_DIR",
        "WANDB_ARTIFACT_DIR",
    ):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return tmp_path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_run_bytes(root: Path, needles: tuple[bytes, ...] = (), timeout: float = 20.0) -> bytes:
    """The offline run's transaction log, once it holds ``needles`` (wandb-core
    may still be flushing a second run of the same process after finish())."""
    deadline = time.monotonic() + timeout
    while True:
        files = list(root.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(files) == 1, files
        data = files[0].read_bytes()
        if all(n in data for n in needles) or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def test_disabled_needs_no_wandb(tmp_path: Path):
    code = (
        "import sys\n"
        "from agents.common.tracking import Tracker\n"
        f"t = Tracker().start({{'a': 1}}, mode='disabled', dir={str(tmp_path)!r})\n"
        "t.log({'x': 1.0}, step=0); t.log_artifact('nowhere', 'n'); t.log_table('t', ['a'], [[1]]); t.finish()\n"
        "assert t.mode == 'disabled' and t.run is None\n"
        "assert 'wandb' not in sys.modules, 'disabled mode imported wandb'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert not (tmp_path / "wandb").exists()


def test_unknown_mode_suggests_closest(tmp_path: Path):
    with pytest.raises(ValueError, match="did you mean 'offline'"):
        Tracker().start({}, mode="ofline", dir=tmp_path)


@pytest.mark.slow
def test_offline_run_holds_metrics_config_and_artifact(wandb_env: Path):
    artifact_dir = wandb_env / "bundle"
    artifact_dir.mkdir()
    (artifact_dir / "metadata.json").write_text('{"format_version": 1}')
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)
        tracker = Tracker().start(
            {"seed": 7, "net_arch": [8, 8]}, mode="offline", project="p", dir=wandb_env
        )
        assert tracker.mode == "offline"
        tracker.log({"train/policy_loss": 0.5, "eval/win_rate": 0.75}, step=10)
        tracker.log({"train/policy_loss": 0.25}, step=20)
        tracker.log_table("eval/per_task", ["task", "win_rate"], [["a", 1.0], ["b", 0.5]], step=20)
        tracker.log_artifact(artifact_dir, name="tuning-policy", type="model")
        assert line_plot(tracker.run, "lr_curve", [0, 1, 2], [1.0, 0.5, 0.25], title="lr", step=20)
        assert line_plot(
            tracker.run, "lr_curves", [0, 1], {"a": [1.0, 0.5], "b": [1.0, 2.0]}, step=20
        )
        tracker.finish()
    needles = (
        b"train/policy_loss",
        b"eval/win_rate",
        b"tuning-policy",
        b"metadata.json",
        b"net_arch",
    )
    data = offline_run_bytes(wandb_env, needles)
    for needle in needles:
        assert needle in data, needle


@pytest.mark.slow
def test_online_without_network_warns_once_and_falls_back_offline(
    wandb_env: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.warns(TrackingWarning) as caught:
        tracker = Tracker().start({"a": 1}, mode="online", dir=wandb_env)
        tracker.log({"metric_after_fallback": 1.0}, step=0)
        tracker.finish()
    assert tracker.mode == "offline"
    assert len([w for w in caught if issubclass(w.category, TrackingWarning)]) == 1
    assert "falling back to offline" in str(caught[0].message)
    assert b"metric_after_fallback" in offline_run_bytes(wandb_env, (b"metric_after_fallback",))


def test_online_without_api_key_falls_back(wandb_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NETRC", str(wandb_env / "no-netrc"))
    tracker = Tracker()
    # Stop at the offline step: this test is about the online precheck.
    monkeypatch.setattr(
        tracker, "_init", lambda mode, *a: None if mode == "offline" else "unexpected"
    )
    with pytest.warns(TrackingWarning, match="no API key"):
        tracker.start({}, mode="online", dir=wandb_env)
    assert tracker.mode == "offline"


def test_unwritable_dir_warns_once_and_disables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.warns(TrackingWarning, match="not writable") as caught:
        tracker = Tracker().start({}, mode="offline", dir=blocker / "sub")
    assert tracker.mode == "disabled" and tracker.run is None
    assert len(caught) == 1
    tracker.log({"x": 1.0}, step=0)
    tracker.finish()


class ExplodingRun:
    """A run whose every call fails (full disk, dead service...)."""

    dir = "/nonexistent/files"

    def __init__(self) -> None:
        self.calls = 0
        self.finished = False

    def log(self, *args, **kwargs):
        self.calls += 1
        raise OSError("No space left on device")

    def finish(self, *args, **kwargs):
        self.finished = True


def test_log_exceptions_warn_once_then_tracking_stops():
    tracker = Tracker()
    run = ExplodingRun()
    tracker.run, tracker.mode = run, "offline"
    with pytest.warns(TrackingWarning, match="No space left") as caught:
        for step in range(5):
            tracker.log({"x": float(step)}, step=step)
    assert len(caught) == 1 and run.calls == 1 and run.finished
    assert tracker.mode == "disabled" and not tracker.active
    tracker.finish()


def test_log_to_run_helpers_never_raise():
    assert log_to_run(None, {"x": 1.0}) is False

    class Recorder:
        def __init__(self):
            self.logged = []

        def log(self, metrics, step=None):
            self.logged.append((metrics, step))

    run = Recorder()
    assert log_to_run(run, {"x": 1.0}, step=3) is True
    assert run.logged == [({"x": 1.0}, 3)]
    with pytest.warns(TrackingWarning):
        assert log_to_run(ExplodingRun(), {"x": 1.0}) is False
    assert line_plot(None, "lr", [0, 1], [1.0, 0.5]) is False


def test_wandb_mode_env_can_only_lower_the_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert Tracker().start({}, mode="offline", dir=tmp_path).mode == "disabled"
    assert not (tmp_path / "wandb").exists()
    monkeypatch.setenv("WANDB_MODE", "online")
    tracker = Tracker()
    monkeypatch.setattr(tracker, "_init", lambda mode, *a: None)
    assert tracker.start({}, mode="offline", dir=tmp_path).mode == "offline"
