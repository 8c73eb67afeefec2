"""Transfer evaluation: realistic plain-PyTorch runs outside the meta-training families.

The deployed policy is judged the way a user would judge it: one ordinary
training loop (`loop.train_run`), tasks it never saw (`suite`), the schedules
practitioners actually use (`methods`), strict win/tie/loss counts and IQM
ratios with bootstrap CIs (`agents.benchmark.stats`), and a report that shows
the worst task first (`report`). `protocol.run_transfer` ties them together.
"""
