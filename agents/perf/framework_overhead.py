"""The scheduler's cost inside Lightning and the Hugging Face Trainer (``hpo-rl bench
overhead``, when the ``[lightning]`` / ``[hf]`` extras are installed).

A model whose training step takes >= 10 ms (an MLP 512-512-512-10, one torch thread,
batch 128, or larger where this CPU steps batch 128 faster: `batch_for_step_time`) is
trained by each framework with a constant torch scheduler (the plain arm) and with a
`TuningScheduler` stepped by the framework itself and fed by its callback
(`agents.deploy.lightning`, `agents.deploy.hf`; both arms log every step, as the
Trainer recipe asks). Both arms step a scheduler, so the overhead is what this one
adds over any scheduler the framework steps. A third arm, the plain arm again on its
own model (the A/A twin), is what the bench reads when there is nothing to find.

**The arms take turns one training step at a time.** On this kind of machine a whole
round's step time moves by up to 50% from one round to the next (9-15 ms for the same
work, 2026-12-07), far more than the 1% to be resolved, and whole rounds run in turn
read an A/A difference of 6-12%. So each arm's ``fit`` runs in its own thread, and a
baton lets one thread train at a time: a step of each arm, in an order that rotates and
reverses (`TakeTurns.order`), so the machine's drift falls on all arms alike. Each arm times its own steps
from one step's start hook to the next (the framework's scheduler step, logging and
data fetch included; set-up excluded), in wall time and in the thread's CPU time. The
overhead is the ratio of the tuned arm's summed step time to the plain arm's, median
over rounds (fresh models each round), minus 1 (target <= 0.01).
``*_overhead_direct``, the time inside ``sched.step`` and ``sched.observe``, is the
scheduler's own cost without its effect on the caches around it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

TARGET_FRAMEWORK_OVERHEAD = 0.01
WIDTHS = (512, 512, 512, 10)
BATCH = 128
"""The batch when a plain step of it takes `MIN_STEP_MS` or more (AMD EPYC: ~10-12 ms)."""
MIN_STEP_MS = 10.0
"""Issue 25 judges the overhead on a model whose step takes >= 10 ms."""
MAX_BATCH = 8192
ARMS = ("plain", "twin", "tuned")
_TURN_TIMEOUT_S = 300.0
"""How long an arm waits for its turn before the bench gives up (a crashed arm)."""


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


def _data(n_steps: int, seed: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_steps * batch, WIDTHS[0], generator=g)
    return x, torch.randint(0, WIDTHS[-1], (n_steps * batch,), generator=g)


def batch_for_step_time(step_ms: float, base: int = BATCH, min_ms: float = MIN_STEP_MS) -> int:
    """The batch whose plain step takes at least ``min_ms``, from ``step_ms`` measured at
    ``base``: ``base`` itself when it is slow enough, else scaled up in proportion (step
    time grows linearly with the batch at these sizes), with a 20% margin, rounded up to
    a multiple of 32 and at most `MAX_BATCH`. A faster CPU (an AVX-512 Intel Xeon steps
    the base batch in ~4 ms) thus gets the same >= 10 ms step, not a 2.5x larger share
    of scheduler time."""
    if not (math.isfinite(step_ms) and step_ms > 0):
        raise ValueError(f"step_ms must be a finite time > 0, got {step_ms!r}")
    if step_ms >= min_ms:
        return base
    scaled = base * 1.2 * min_ms / step_ms
    return min(MAX_BATCH, 32 * math.ceil(scaled / 32))


def plain_step_ms(batch: int = BATCH, n_steps: int = 12, seed: int = 0) -> float:
    """Median milliseconds of one bare SGD step of the bench's MLP at ``batch`` (the
    loop without any framework), after two warm-up steps; one torch thread."""
    from agents.common.threads import torch_threads

    model = _mlp(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = _data(n_steps + 2, seed, batch)
    times = []
    with torch_threads(1):
        for i in range(n_steps + 2):
            start = time.perf_counter()
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(x[i * batch : (i + 1) * batch]), y[i * batch : (i + 1) * batch]
            )
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1e3


class TakeTurns:
    """Lets threads that each run a training loop train one step at a time, in turn.

    Each arm calls `step_start` from its loop's step-start hook and `train_end` from its
    train-end hook. Cycle ``k`` runs one step of every arm, in the order `order` gives.
    An arm's step time runs from its turn's start to its next step-start hook (wall and
    thread CPU time); the time it spends waiting for its turn is not in it. No arm starts before every arm has
    reached its first step (set-up is not timed), and none returns from ``fit`` before
    every arm has trained its last (tear-down is not timed either).
    """

    def __init__(self, arms: Sequence[str], clock: Callable[[], float] = time.perf_counter):
        self.arms = tuple(arms)
        self.wall: dict[str, list[float]] = {arm: [] for arm in self.arms}
        self.cpu: dict[str, list[float]] = {arm: [] for arm in self.arms}
        self._clock = clock
        self._turn = threading.Condition()
        self._cycle = 0
        self._position = 0
        self._done: set[str] = set()
        self._failed = False
        self._started: dict[str, tuple[float, float]] = {}
        self._all_set_up = threading.Barrier(len(self.arms), timeout=_TURN_TIMEOUT_S)
        self._all_trained = threading.Barrier(len(self.arms), timeout=_TURN_TIMEOUT_S)

    def order(self, cycle: int) -> tuple[str, ...]:
        """`arms` rotated by ``cycle``, in reverse every other ``len(arms)`` cycles: each
        arm holds each position and follows each other arm equally often (with three
        arms, no arm's step runs twice in a row)."""
        n = len(self.arms)
        base = self.arms if (cycle // n) % 2 == 0 else self.arms[::-1]
        k = cycle % n
        return base[k:] + base[:k]

    def _holder(self) -> str:
        return self.order(self._cycle)[self._position]

    def step_start(self, arm: str) -> None:
        if arm in self._started:
            self._stop_clock(arm)
            with self._turn:
                self._pass_turn()
        else:
            self._all_set_up.wait()
        with self._turn:
            if not self._turn.wait_for(
                lambda: self._failed or self._holder() == arm, timeout=_TURN_TIMEOUT_S
            ):
                self.abort()  # a hung arm: stop the rest (the lock is re-entrant)
            if self._failed:
                raise RuntimeError("the overhead bench stopped: another arm failed or hung")
        self._started[arm] = (self._clock(), time.thread_time())

    def train_end(self, arm: str) -> None:
        self._stop_clock(arm)
        with self._turn:
            self._done.add(arm)
            self._pass_turn()
        self._all_trained.wait()

    def abort(self) -> None:
        """Wakes every waiting arm with an error (an arm's loop raised)."""
        with self._turn:
            self._failed = True
            self._turn.notify_all()
        self._all_set_up.abort()
        self._all_trained.abort()

    def _stop_clock(self, arm: str) -> None:
        wall_start, cpu_start = self._started[arm]
        self.wall[arm].append(self._clock() - wall_start)
        self.cpu[arm].append(time.thread_time() - cpu_start)

    def _pass_turn(self) -> None:
        """To the next arm in this cycle's order that is still training (lock held)."""
        if len(self._done) == len(self.arms):
            return
        while True:
            self._position += 1
            if self._position == len(self.arms):
                self._cycle, self._position = self._cycle + 1, 0
            if self._holder() not in self._done:
                break
        self._turn.notify_all()

    def run(self, loops: dict[str, Callable[[], None]]) -> None:
        """Runs each arm's loop in its own thread until all are done; re-raises a failure.

        The threads are pinned to one CPU where the platform allows it: an arm whose
        thread the OS kept on a busier core would read slower at every step.
        """
        errors: list[BaseException] = []

        def guarded(loop: Callable[[], None]) -> None:
            try:
                loop()
            except BaseException as error:  # surfaced below, in the caller's thread
                errors.append(error)
                self.abort()

        threads = [threading.Thread(target=guarded, args=(loops[arm],)) for arm in self.arms]
        with _one_cpu():
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]


@contextlib.contextmanager
def _one_cpu() -> Iterator[None]:
    """Pins the calling thread, and the threads it starts meanwhile, to one CPU."""
    if not hasattr(os, "sched_setaffinity"):  # macOS, Windows: the OS places them
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


class _InsideScheduler:
    """What the tuned arm's scheduler did in a round: its own time, and the step windows
    (indices into `TakeTurns.wall`) in which it decided."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.decision_windows: list[int] = []
        self.turns: TakeTurns | None = None

    def start_round(self, turns: TakeTurns) -> None:
        self.seconds, self.decision_windows, self.turns = 0.0, [], turns

    def window(self) -> int:
        """The tuned arm's step window open now: as many as it has finished."""
        return len(self.turns.wall["tuned"]) if self.turns is not None else 0


_INSIDE = _InsideScheduler()
"""The current round's: filled by the timed ``sched.step`` / ``sched.observe`` of `_scheduler`."""


def _scheduler(policy: Any, opt: torch.optim.Optimizer, n_steps: int) -> Any:
    """The scheduler a user gets by default on a `RUN_STEPS` run (its interval), over a
    budget long enough for the round; its ``step`` and ``observe`` time themselves
    (instance attributes: the framework calls them as it would the methods)."""
    from agents.deploy.budget import decisions_per_run
    from agents.perf.overhead import RUN_STEPS

    interval = max(1, RUN_STEPS // decisions_per_run(policy))
    sched = policy.scheduler(opt, total_steps=max(RUN_STEPS, n_steps), control_interval=interval)
    clock = time.perf_counter

    history = sched.history  # the log's own list: it grows by one per decision

    def timed(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            entered, decisions = clock(), len(history)
            try:
                return method(*args, **kwargs)
            finally:
                _INSIDE.seconds += clock() - entered
                if len(history) > decisions:
                    _INSIDE.decision_windows.append(_INSIDE.window())

        return call

    sched.step, sched.observe = timed(sched.step), timed(sched.observe)
    return sched


def _plain_scheduler(opt: torch.optim.Optimizer) -> Any:
    # The plain arm steps a constant torch scheduler, as the Trainer's default does: the
    # overhead is what this scheduler adds over any scheduler the framework steps.
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def _lightning_loop(
    policy: Any, arm: str, turns: TakeTurns, n_steps: int, seed: int, root: str, batch: int
) -> Callable[[], None]:
    """One arm's Lightning run of ``n_steps`` steps, set up here, its steps timed by
    ``turns`` when the returned ``fit`` runs."""
    import lightning

    from agents.deploy.lightning import TuningLightningCallback

    tuned = arm == "tuned"

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp(seed)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            sched = _scheduler(policy, opt, n_steps) if tuned else _plain_scheduler(opt)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class Turns(lightning.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, i: int) -> None:
            turns.step_start(arm)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            turns.train_end(arm)

    x, y = _data(n_steps, seed, batch)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
    callbacks: list[Any] = [Turns()] + ([TuningLightningCallback()] if tuned else [])
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
    module = Module()
    return lambda: trainer.fit(module, loader)


class _Classifier(torch.nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = _mlp(seed)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def _hf_loop(
    policy: Any, arm: str, turns: TakeTurns, n_steps: int, seed: int, root: str, batch: int
) -> Callable[[], None]:
    """One arm's Hugging Face Trainer run of ``n_steps`` steps, set up here (the Trainers
    share accelerate's global state: they are built one at a time, before any trains),
    its steps timed by ``turns`` when the returned ``train`` runs."""
    import transformers

    from agents.deploy.hf import TuningTrainerCallback

    tuned = arm == "tuned"

    class Turns(transformers.TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            turns.step_start(arm)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            turns.train_end(arm)

    x, y = _data(n_steps, seed, batch)
    data = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    model = _Classifier(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = _scheduler(policy, opt, n_steps) if tuned else _plain_scheduler(opt)
    callbacks: list[Any] = [Turns()] + ([TuningTrainerCallback()] if tuned else [])
    args = transformers.TrainingArguments(
        root,
        max_steps=n_steps,
        per_device_train_batch_size=batch,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, optimizers=(opt, sched), callbacks=callbacks
    )

    def train() -> None:
        trainer.train()

    return train


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _median_ratio(rounds: Sequence[TakeTurns], arm: str, times: str = "wall") -> float:
    """Median over rounds of the arm's summed step time over the plain arm's, minus 1."""
    return statistics.median(
        sum(getattr(t, times)[arm]) / sum(getattr(t, times)["plain"]) - 1.0 for t in rounds
    )


def robust_extra(
    arm_steps: Sequence[float], plain_steps: Sequence[float], decision_windows: Sequence[int]
) -> float:
    """The arm's extra time per step over the plain arm's, as a fraction of the plain
    arm's median step, read so that page-fault bursts do not decide it.

    The arms take the same steps in turns, so step ``k`` of each is a pair. On steps
    without a decision the extra time is the median of the pairs' differences (a burst
    of page faults, which lands on any arm at random, moves a sum by several percent and
    a median hardly at all); the steps in which the scheduler decided add their own
    differences in full, so the decisions' cost is counted, not trimmed away.
    """
    if len(arm_steps) != len(plain_steps) or not plain_steps:
        raise ValueError(
            f"paired step times needed: {len(arm_steps)} against {len(plain_steps)} steps"
        )
    decided = set(decision_windows)
    diffs = [a - p for a, p in zip(arm_steps, plain_steps)]
    ordinary = [d for k, d in enumerate(diffs) if k not in decided]
    extra = sum(diffs[k] for k in decided if k < len(diffs))
    if ordinary:
        extra += statistics.median(ordinary) * len(ordinary)
    return extra / (statistics.median(plain_steps) * len(plain_steps))


def run_framework_overhead(policy: Any, quick: bool = False, seed: int = 0) -> dict[str, float]:
    """Print and return each installed framework's step time and the scheduler's overhead."""
    from agents.common.threads import torch_threads

    # Full: 8 rounds of 360 steps, six decisions a round at the default interval of 60:
    # rounds differ by +-2% (fresh models), steps within a round by far less.
    n_rounds, n_steps = (1, 60) if quick else (8, 360)
    frameworks = {"lightning": _lightning_loop, "hf_trainer": _hf_loop}
    modules = {"lightning": "lightning", "hf_trainer": "transformers"}
    base_ms = plain_step_ms(seed=seed)
    batch = batch_for_step_time(base_ms)
    print(
        f"framework_batch={batch} (a bare step of batch {BATCH} took {base_ms:.1f} ms on this "
        f"CPU; the overhead is judged on a step of >= {MIN_STEP_MS:.0f} ms)"
    )
    result: dict[str, float] = {"framework_batch": float(batch)}
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    for name, make_loop in frameworks.items():
        if not _available(modules[name]):
            extra = "hf" if name == "hf_trainer" else name
            print(f'{name}: not installed (pip install "hpo-rl[{extra}]")')
            continue
        rounds: list[TakeTurns] = []
        inside: list[float] = []
        decisions: list[list[int]] = []
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        with torch_threads(1), warnings.catch_warnings(), quiet[0], quiet[1]:
            warnings.simplefilter("ignore")
            for r in range(n_rounds + 1):  # round 0 warms up and is discarded
                turns = TakeTurns(ARMS)
                with tempfile.TemporaryDirectory() as root:
                    loops = {
                        arm: make_loop(
                            policy, arm, turns, n_steps, seed + r, f"{root}/{arm}", batch
                        )
                        for arm in ARMS
                    }
                    _INSIDE.start_round(turns)
                    turns.run(loops)
                if r > 0:
                    rounds.append(turns)
                    inside.append(_INSIDE.seconds)
                    decisions.append(list(_INSIDE.decision_windows))

        ratio, cpu_ratio, twin_ratio = (
            _median_ratio(rounds, "tuned"),
            _median_ratio(rounds, "tuned", "cpu"),
            _median_ratio(rounds, "twin"),
        )
        plain_ms = statistics.median(statistics.fmean(t.wall["plain"]) for t in rounds) * 1e3
        direct = statistics.median(i / sum(t.wall["plain"]) for i, t in zip(inside, rounds))
        result[f"{name}_step_ms"] = plain_ms
        result[f"{name}_overhead"] = ratio
        result[f"{name}_overhead_cpu"] = cpu_ratio
        result[f"{name}_overhead_aa_twin"] = twin_ratio
        result[f"{name}_overhead_direct"] = direct
        robust, robust_twin = (
            statistics.median(
                robust_extra(t.wall[arm], t.wall["plain"], d) for t, d in zip(rounds, decisions)
            )
            for arm in ("tuned", "twin")
        )
        result[f"{name}_overhead_robust"] = robust
        result[f"{name}_overhead_robust_aa_twin"] = robust_twin
        result[f"{name}_decisions_per_round"] = statistics.median(map(len, decisions))
        print(
            f"{name}_overhead={ratio:.4f} (wall time, median over {n_rounds} rounds of "
            f"{n_steps} steps with the arms taking turns step by step, against a constant "
            f"torch scheduler; plain step {plain_ms:.1f} ms, MLP {'-'.join(map(str, WIDTHS))} "
            f"batch {batch}, 1 torch thread; target <= {TARGET_FRAMEWORK_OVERHEAD})"
        )
        print(
            f"{name}_overhead_cpu={cpu_ratio:.4f} (the same steps' thread CPU time: free of "
            "time the machine gave to other work)"
        )
        print(
            f"{name}_overhead_aa_twin={twin_ratio:.4f} (the plain arm against itself: what "
            "the wall-time ratio reads when there is nothing to find)"
        )
        print(
            f"{name}_overhead_direct={direct:.4f} (time inside sched.step and sched.observe "
            "over the plain arm's: the scheduler's own cost, free of the machine's noise)"
        )
        print(
            f"{name}_overhead_robust={robust:.4f} (per step, paired with the plain arm's: "
            "the median difference on steps without a decision, the full difference on "
            "steps with one; page-fault bursts move the sums above by up to +-8%, this "
            "hardly)"
        )
        print(
            f"{name}_overhead_robust_aa_twin={robust_twin:.4f} (the A/A twin read the same "
            "way: this estimate's resolution)"
        )
    return result
