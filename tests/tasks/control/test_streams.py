from __future__ import annotations

import torch

from tasks.control.streams import stream_keys, uniforms


def test_uniforms_are_in_open_unit_interval_and_roughly_uniform() -> None:
    keys = stream_keys(range(8), stream=0)
    u = uniforms(keys, torch.zeros(8, dtype=torch.int64), (1000,))
    assert u.dtype == torch.float64 and u.shape == (8, 1000)
    assert bool(((u > 0) & (u < 1)).all())
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs(u.var().item() - 1 / 12) < 0.005


def test_run_stream_depends_only_on_its_seed_and_counter() -> None:
    seeds = [5, 7, 11]
    counters = torch.tensor([3, 0, 9])
    batch = uniforms(stream_keys(seeds, 1), counters, (4, 2))
    alone = uniforms(stream_keys([7], 1), torch.tensor([0]), (4, 2))
    assert torch.equal(batch[1], alone[0])


def test_streams_and_counters_differ() -> None:
    keys = stream_keys([0], 0)
    a = uniforms(keys, torch.tensor([0]), (16,))
    b = uniforms(keys, torch.tensor([1]), (16,))
    c = uniforms(stream_keys([0], 1), torch.tensor([0]), (16,))
    assert not torch.equal(a, b) and not torch.equal(a, c)
    assert abs(torch.corrcoef(torch.stack([a[0], b[0]]))[0, 1].item()) < 0.8
