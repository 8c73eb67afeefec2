"""The scheduler's cost inside Lightning and the Hugging Face Trainer (``hpo-rl bench
overhead``, when the ``[lightning]`` / ``[hf]`` extras are installed).

A model whose training step takes >= 10 ms (an MLP 512-512-512-10, batch 128, one
torch thread) is trained by each framework with a constant torch scheduler (the plain
arm) and with a `TuningScheduler` stepped by the framework itself and fed by its
callback (`agents.deploy.lightning`, `agents.deploy.hf`; both arms log every step, as
the Trainer recipe asks). Both arms step a scheduler, so the overhead is what this one
adds over any scheduler the framework steps. Each arm times its own training steps
(from the framework's train-start hook to its train-end hook, set-up excluded), in wall
and in process CPU time; three arms (plain, tuned and the plain arm again, the A/A
twin) run in rotated order and each overhead is the median over rounds of tuned/plain
- 1 (target <= 0.01). The twin's ratio is what the bench reads when there is nothing to
find: a wall-time overhead inside it is not resolved. ``*_overhead_direct``, the time
inside ``sched.step`` and ``sched.observe``, is the scheduler's own cost without the
noise (Lightning's dispatch of one more callback's hooks is not in it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch

TARGET_FRAMEWORK_OVERHEAD = 0.01
WIDTHS = (512, 512, 512, 10)
BATCH = 128


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    a, b, c, d = WIDTHS
    return torch.nn.Sequential(
        torch.nn.Linear(a, b),
        torch.nn.ReLU(),
        torch.nn.Linear(b, c),
        torch.nn.ReLU(),
        torch.nn.Linear(c, d),
    )


def _data(n_steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_steps * BATCH, WIDTHS[0], generator=g)
    return x, torch.randint(0, WIDTHS[-1], (n_steps * BATCH,), generator=g)


_INSIDE = {"seconds": 0.0}
"""Wall seconds spent inside the tuned arm's ``sched.step`` and ``sched.observe``."""


def _scheduler(policy: Any, opt: torch.optim.Optimizer, n_steps: int) -> Any:
    """The scheduler a user gets by default on a `RUN_STEPS` run (its interval), over a
    budget long enough for the round; its ``step`` and ``observe`` time themselves
    (instance attributes: the framework calls them as it would the methods)."""
    from agents.deploy.budget import decisions_per_run
    from agents.perf.overhead import RUN_STEPS

    interval = max(1, RUN_STEPS // decisions_per_run(policy))
    sched = policy.scheduler(opt, total_steps=max(RUN_STEPS, n_steps), control_interval=interval)
    clock = time.perf_counter

    def timed(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            entered = clock()
            try:
                return method(*args, **kwargs)
            finally:
                _INSIDE["seconds"] += clock() - entered

        return call

    sched.step, sched.observe = timed(sched.step), timed(sched.observe)
    return sched


def _lightning_round(policy: Any, tuned: bool, n_steps: int, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``n_steps`` Lightning training steps (set-up excluded)."""
    import lightning

    from agents.deploy.lightning import TuningLightningCallback

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp(seed)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            # The plain arm steps a constant torch scheduler, as the Trainer's does: the
            # overhead is what this scheduler adds over any scheduler Lightning steps.
            sched = (
                _scheduler(policy, opt, n_steps)
                if tuned
                else torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    span: dict[str, float] = {}

    class Clock(lightning.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            span["start"], span["cpu_start"] = time.perf_counter(), time.process_time()

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            span["end"], span["cpu_end"] = time.perf_counter(), time.process_time()

    x, y = _data(n_steps, seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    callbacks: list[Any] = [Clock()] + ([TuningLightningCallback()] if tuned else [])
    with tempfile.TemporaryDirectory() as root:
        trainer = lightning.Trainer(
            max_steps=n_steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
            callbacks=callbacks,
            accelerator="cpu",
            devices=1,
        )
        trainer.fit(Module(), loader)
    return span["end"] - span["start"], span["cpu_end"] - span["cpu_start"]


class _Classifier(torch.nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = _mlp(seed)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def _hf_round(policy: Any, tuned: bool, n_steps: int, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``n_steps`` Hugging Face Trainer steps (set-up excluded)."""
    import transformers

    from agents.deploy.hf import TuningTrainerCallback

    span: dict[str, float] = {}

    class Clock(transformers.TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            span["start"], span["cpu_start"] = time.perf_counter(), time.process_time()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            span["end"], span["cpu_end"] = time.perf_counter(), time.process_time()

    x, y = _data(n_steps, seed)
    data = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    model = _Classifier(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if tuned:
        sched: Any = _scheduler(policy, opt, n_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    callbacks: list[Any] = [Clock()] + ([TuningTrainerCallback()] if tuned else [])
    with tempfile.TemporaryDirectory() as root:
        args = transformers.TrainingArguments(
            root,
            max_steps=n_steps,
            per_device_train_batch_size=BATCH,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = transformers.Trainer(
            model=model,
            args=args,
            train_dataset=data,
            optimizers=(opt, sched),
            callbacks=callbacks,
        )
        trainer.train()
    return span["end"] - span["start"], span["cpu_end"] - span["cpu_start"]


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_framework_overhead(policy: Any, quick: bool = False, seed: int = 0) -> dict[str, float]:
    """Print and return each installed framework's step time and the scheduler's overhead."""
    from agents.common.threads import torch_threads

    # Full: 120 steps a round, two decisions at the default interval of 60.
    n_rounds, n_steps = (1, 60) if quick else (8, 120)
    frameworks = {"lightning": _lightning_round, "hf_trainer": _hf_round}
    modules = {"lightning": "lightning", "hf_trainer": "transformers"}
    result: dict[str, float] = {}
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    for name, run_round in frameworks.items():
        if not _available(modules[name]):
            print(
                f'{name}: not installed (pip install "hpo-rl[{"hf" if name == "hf_trainer" else name}]")'
            )
            continue
        plain: list[tuple[float, float]] = []
        twin: list[tuple[float, float]] = []
        tuned: list[tuple[float, float]] = []
        inside: list[float] = []
        arms = {"plain": plain, "twin": twin, "tuned": tuned}
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        with torch_threads(1), warnings.catch_warnings(), quiet[0], quiet[1]:
            warnings.simplefilter("ignore")
            for r in range(n_rounds + 1):  # round 0 warms up and is discarded
                # Three arms in rotated order; the twin is the plain arm again (A/A):
                # the ratio it reads is the machine's noise, the bench's resolution.
                order = list(arms)[r % 3 :] + list(arms)[: r % 3]
                for arm in order:
                    _INSIDE["seconds"] = 0.0
                    seconds = run_round(policy, arm == "tuned", n_steps, seed)
                    if r > 0:
                        arms[arm].append(seconds)
                        if arm == "tuned":
                            inside.append(_INSIDE["seconds"])
        twin_ratio = statistics.median(t[0] / p[0] for t, p in zip(twin, plain)) - 1.0
        result[f"{name}_overhead_aa_twin"] = twin_ratio
        ratio = statistics.median(t[0] / p[0] for t, p in zip(tuned, plain)) - 1.0
        cpu_ratio = statistics.median(t[1] / p[1] for t, p in zip(tuned, plain)) - 1.0
        result[f"{name}_step_ms"] = statistics.median(p[0] for p in plain) / n_steps * 1e3
        result[f"{name}_overhead"] = ratio
        result[f"{name}_overhead_cpu"] = cpu_ratio
        direct = statistics.median(i / p[0] for i, p in zip(inside, plain))
        result[f"{name}_overhead_direct"] = direct
        print(
            f"{name}_overhead={ratio:.4f} (wall time, median of {n_rounds} paired rounds of "
            f"{n_steps} steps against a constant torch scheduler; plain step "
            f"{result[f'{name}_step_ms']:.1f} ms, MLP {'-'.join(map(str, WIDTHS))} batch {BATCH}, "
            f"1 torch thread; target <= {TARGET_FRAMEWORK_OVERHEAD})"
        )
        print(
            f"{name}_overhead_cpu={cpu_ratio:.4f} (the same rounds' process CPU time: "
            "free of time the machine gave to other work)"
        )
        print(
            f"{name}_overhead_aa_twin={twin_ratio:.4f} (the plain arm against itself: what "
            "the wall-time ratio reads when there is nothing to find)"
        )
        print(
            f"{name}_overhead_direct={direct:.4f} (time inside sched.step and sched.observe "
            "over the plain round's: the scheduler's own cost, free of the machine's noise)"
        )
    return result
