"""`StatsTracker`: the `hpo_env.stats.StepStats` of one user training run.

The deployed controller must see the observations the environment produced
during meta-training, so this module computes every statistic exactly as
`hpo_env.stats` defines it, from nothing but the user's parameters, their
``.grad`` after each ``optimizer.step()`` and the reported losses:

- per update, only the float loss is appended (the per-step cost is a list
  append: the vector work happens once per control interval);
- at the interval's end, ``.grad`` still holds the gradient of the update just
  taken (computed at θ before it), which gives ``grad_norm`` and, against a flat
  copy of the previous interval's last gradient, ``grad_cosine``;
- ``update_ratio`` compares the parameters with a flat snapshot taken at the
  interval's start (the previous interval's end).

Parameters with ``requires_grad=False`` are skipped; a trainable parameter
whose ``.grad`` is ``None`` (unused in this step's loss) counts as a zero
gradient, so the flat vectors keep one layout across intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from hpo_env.space import Real
from hpo_env.stats import RunInterval, StepStats


def _trainable(params: Iterable[Any]) -> list[Tensor]:
    out: list[Tensor] = []
    seen: set[int] = set()
    for p in params:
        if isinstance(p, dict):  # an optimizer param group
            out.extend(q for q in _trainable(p["params"]) if id(q) not in seen)
            seen.update(id(q) for q in out)
            continue
        if not isinstance(p, Tensor):
            raise TypeError(
                f"expected parameters (tensors) or param-group dicts, got {type(p).__name__}"
            )
        if p.requires_grad and id(p) not in seen:
            out.append(p)
            seen.add(id(p))
    return out


class _FlatPair:
    """Two flat float32 buffers, each with one view per parameter shaped like it.

    Copying a run's parameters (or gradients) into a flat vector is one
    ``torch._foreach_copy_`` into the views (dtype and device conversions
    included, exact), instead of a reshape per parameter and a ``cat``: a handful
    of dispatches fewer at every decision, where each costs several microseconds
    in a loop whose caches the training step has just filled. Two buffers: the
    vector being written must not be the one kept from the previous interval.
    """

    def __init__(self, like: list[Tensor], device: torch.device) -> None:
        self.sizes = [p.numel() for p in like]
        self.shapes = [p.shape for p in like]
        # Zeros, not empty: the pages are touched here, at set-up, and not by the first
        # decisions inside the loop (~2 ms per MB of parameters on CPU, `hpo-rl bench overhead`).
        self.buffers = [torch.zeros(sum(self.sizes), device=device) for _ in range(2)]
        self.views = [self.split(buf) for buf in self.buffers]

    def split(self, flat: Tensor) -> list[Tensor]:
        """``flat``'s per-parameter views, shaped like the parameters."""
        return [chunk.view(shape) for chunk, shape in zip(flat.split(self.sizes), self.shapes)]

    def fill(self, sources: list[Tensor | None], keep: Tensor | None) -> Tensor:
        """The flat copy of ``sources`` (None counts as zeros), written into the
        buffer that ``keep`` (the previous interval's vector) is not. Call it under
        ``torch.no_grad()`` (the tracker's methods are)."""
        flat, views, present = self.targets(sources, keep)
        _copy_all(views, present)
        return flat

    def targets(
        self, sources: Sequence[Tensor | None], keep: Tensor | None
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """`fill` up to its copy: the buffer, and the views and sources to copy (views
        whose source is None are zeroed here), so that several pairs can share one
        ``_foreach_copy_``."""
        i = 1 if keep is self.buffers[0] else 0
        views = self.views[i]
        if all(t is not None for t in sources):
            return self.buffers[i], views, sources  # type: ignore[return-value]
        present = [(v, t) for v, t in zip(views, sources) if t is not None]
        for view, source in zip(views, sources):
            if source is None:
                view.zero_()
        return self.buffers[i], [v for v, _ in present], [t for _, t in present]


def _copy_all(destinations: list[Tensor], sources: list[Tensor]) -> None:
    """``destinations[i].copy_(sources[i])`` for all i, in one foreach call when torch
    takes the lists (dtype and device conversions included, exact)."""
    try:
        torch._foreach_copy_(destinations, sources)
    except (AttributeError, RuntimeError):  # no such kernel, or a list it refuses
        for destination, source in zip(destinations, sources):
            destination.copy_(source)


def _pairwise_sum(values: list[float], start: int, n: int) -> float:
    """``values[start:start + n]``'s float64 sum in NumPy's pairwise order
    (``pairwise_sum`` in numpy/_core/src/umath/loops_utils.h.src: eight
    accumulators over blocks of up to 128, halves above), bit for bit."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    if n <= 128:
        r0, r1, r2, r3, r4, r5, r6, r7 = values[start : start + 8]
        end = start + n - n % 8
        for i in range(start + 8, end, 8):
            r0 += values[i]
            r1 += values[i + 1]
            r2 += values[i + 2]
            r3 += values[i + 3]
            r4 += values[i + 4]
            r5 += values[i + 5]
            r6 += values[i + 6]
            r7 += values[i + 7]
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for i in range(end, start + n):
            total += values[i]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, start, half) + _pairwise_sum(values, start + half, n - half)


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation in float64, bit-identical to ``np.mean``
    / ``np.std`` (the same pairwise sums, tests/agents/deploy/test_run_stats.py checks
    it) in plain Python: inside a training loop, whose step has just evicted NumPy's
    code from the caches, this costs a fraction of the array calls. Non-finite
    inputs give non-finite results."""
    n = len(values)
    mean = (0.0 + _pairwise_sum(values, 0, n)) / n  # NumPy starts from the identity, 0.0
    squares = [(d := v - mean) * d for v in values]
    return mean, math.sqrt((0.0 + _pairwise_sum(squares, 0, n)) / n)


class StatsTracker:
    """Accumulates one control interval of a run and returns its `StepStats` (B=1).

    Args:
        params: The trained parameters: an iterable of tensors, of optimizer param
            groups, or a `torch.optim.Optimizer` (its ``param_groups`` are used).

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> tracker = StatsTracker(opt)
        >>> for _ in range(4):
        ...     loss = model(torch.ones(2, 3)).square().mean()
        ...     opt.zero_grad(); loss.backward(); opt.step()
        ...     tracker.record(loss.item())
        >>> stats = tracker.end_interval({"learning_rate": 0.1}, progress=0.5)
        >>> stats.n_updates
        4
    """

    def __init__(self, params: Iterable[Any] | torch.optim.Optimizer) -> None:
        groups = params.param_groups if isinstance(params, torch.optim.Optimizer) else params
        self.params = _trainable(groups)
        if not self.params:
            raise ValueError(
                "StatsTracker found no trainable parameters (requires_grad=True); "
                "pass the optimizer or the model's parameters()"
            )
        self.losses: list[float] = []
        device = self.params[0].device
        self._theta_pair = _FlatPair(self.params, device)
        self._grad_pair = _FlatPair(self.params, device)
        # θ_end - θ_start, written in place: a fresh vector at every decision would go
        # back and forth to the allocator (and, above its trim threshold, the kernel).
        self._update = torch.zeros_like(self._theta_pair.buffers[0])
        with torch.no_grad():
            self.theta_start = self._theta_pair.fill(list(self.params), keep=None)
        self.prev_grad: Tensor | None = None
        # ||theta_start|| and ||prev_grad||, once known (None: compute from the vector).
        self._start_norm: float | None = None
        self._prev_grad_norm: float | None = None
        self.params_finite = True
        """Whether the parameters at the last interval's end had a finite norm."""

    # -- flat views -----------------------------------------------------------

    def _flat_grad_and_params(self) -> tuple[Tensor, Tensor]:
        """Flat copies of the gradients and the parameters, in one foreach copy."""
        grad, grad_views, grads = self._grad_pair.targets(
            [p.grad for p in self.params], self.prev_grad
        )
        theta, theta_views, params = self._theta_pair.targets(self.params, self.theta_start)
        _copy_all(grad_views + theta_views, grads + params)
        return grad, theta

    # -- per update -----------------------------------------------------------

    def record(self, loss: float) -> None:
        """Append one update's minibatch loss (computed before that update)."""
        self.losses.append(loss)

    def record_many(self, losses: list[float]) -> None:
        """`record` each of ``losses``, in order."""
        self.losses.extend(losses)

    @property
    def n_recorded(self) -> int:
        """Updates recorded in the current interval."""
        return len(self.losses)

    # -- per interval ---------------------------------------------------------

    @torch.no_grad()
    def end_interval(
        self,
        hparams: Mapping[str, float | Tensor],
        progress: float,
        val_loss: float | None = None,
    ) -> StepStats:
        """The interval's statistics; starts the next interval.

        Args:
            hparams: Hyperparameter values in effect during the interval.
            progress: Fraction of the run's update budget done after the interval.
            val_loss: Validation objective measured after the interval, if any.

        Raises:
            RuntimeError: No update was recorded since the last interval ended.
        """
        return StepStats.from_run(self.end_interval_run(hparams, progress, val_loss))

    def end_interval_run(
        self,
        hparams: Mapping[str, Real | Tensor],
        progress: float,
        val_loss: float | None = None,
        measured: tuple[float, float, float] | None = None,
    ) -> RunInterval:
        """`end_interval` as floats (`hpo_env.stats.RunInterval`): the scheduler's path,
        which builds no one-element tensors. ``measured``: `measure`'s output taken
        when the interval's last update was made, if its losses came later."""
        if torch.is_grad_enabled():  # the scheduler calls it with autograd already off
            with torch.no_grad():
                return self.end_interval_run(hparams, progress, val_loss, measured)
        k = len(self.losses)
        if k == 0:
            raise RuntimeError(
                "StatsTracker.end_interval called with no recorded update; call record(loss) first"
            )
        grad_norm, cosine, update_ratio = measured if measured is not None else self.measure()
        mean, std = _mean_std(self.losses)
        first = self.losses[0]
        self.losses = []
        val = math.nan if val_loss is None else float(val_loss)
        return RunInterval(
            train_loss=mean,
            train_loss_std=std,
            train_loss_first=first,
            grad_norm=grad_norm,
            grad_cosine=cosine,
            update_ratio=update_ratio,
            n_updates=k,
            hparams={name: float(v) for name, v in hparams.items()},
            val_loss=val if math.isfinite(val) else math.nan,
            progress=float(progress),
        )

    def measure(self) -> tuple[float, float, float]:
        """The interval's vector statistics, read now from ``.grad`` and the parameters:
        ``(grad_norm, grad_cosine, update_ratio)``; starts the next interval's vectors.
        `end_interval_run` calls it unless it was taken already (a framework that hands
        the losses over after the update, when the gradients are gone)."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.measure()
        # Few tensor ops (this runs inside the user's loop): the vector work is one
        # foreach copy, one subtraction, one fused norm and one dot; the rest is floats.
        # The norms of this interval's θ_end and gradient are the next interval's
        # ||θ_start|| and previous-gradient norm: kept, not recomputed.
        grad, theta_end = self._flat_grad_and_params()
        update = torch.sub(theta_end, self.theta_start, out=self._update)
        vectors = [grad, update, theta_end]
        if self._start_norm is None:
            vectors.append(self.theta_start)
        if self.prev_grad is not None and self._prev_grad_norm is None:
            vectors.append(self.prev_grad)
        scalars = list(torch._foreach_norm(vectors))
        if self.prev_grad is not None:
            scalars.append(grad @ self.prev_grad)
        values = torch.stack(scalars).tolist()
        grad_norm, update_norm, end_norm = values[:3]
        rest = values[3:]
        start_norm = rest.pop(0) if self._start_norm is None else self._start_norm
        cosine = 0.0
        if self.prev_grad is not None:
            prev_norm = rest.pop(0) if self._prev_grad_norm is None else self._prev_grad_norm
            cosine = rest.pop(0) / max(grad_norm * prev_norm, 1e-12)
        self.prev_grad, self._prev_grad_norm = grad, grad_norm
        # A non-finite θ_end (or one whose norm overflows float32) is no starting point:
        # θ_start stays the last finite snapshot, which `restore_start` can put back.
        self.params_finite = math.isfinite(end_norm)
        if self.params_finite:
            self.theta_start, self._start_norm = theta_end, end_norm
        return grad_norm, cosine, update_norm / (start_norm + 1e-12)

    @torch.no_grad()
    def params_all_finite(self) -> bool:
        """Whether every element of every parameter is finite now (one read of them
        all and one host sync: for the rare moment a loss was not finite)."""
        return all(bool(torch.isfinite(p).all()) for p in self.params)

    @torch.no_grad()
    def restore_start(self) -> None:
        """Copy θ_start (the parameters at the last decision whose parameters were
        finite) back into the parameters (converted to each parameter's dtype: a
        float64 parameter comes back rounded to float32). The interval's recorded
        losses stay; its update ratio is then measured from the restored point."""
        _copy_all(self.params, self._theta_pair.split(self.theta_start))
        self.params_finite = True

    # -- checkpointing ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the current interval after a restart."""
        return {
            "losses": list(self.losses),
            "theta_start": self.theta_start.detach().cpu().clone(),
            "prev_grad": None if self.prev_grad is None else self.prev_grad.detach().cpu().clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        expected = self.theta_start.numel()
        theta = torch.as_tensor(state["theta_start"], dtype=torch.float32)
        if theta.numel() != expected:
            raise ValueError(
                f"StatsTracker state is for {theta.numel()} trainable parameters, this run has "
                f"{expected}: load the state into a run with the same model"
            )
        device = self.params[0].device
        self.losses = [float(x) for x in state["losses"]]
        self.theta_start = theta.to(device)
        self._start_norm = self._prev_grad_norm = None
        prev = state.get("prev_grad")
        self.prev_grad = (
            None if prev is None else torch.as_tensor(prev, dtype=torch.float32).to(device)
        )
