"""Transfer evaluation: realistic plain-PyTorch runs outside the meta-training families.

The deployed policy is judged the way a user would judge it: one ordinary
training loop (`loop.train_run`), tasks it never saw (`suite`), the schedules
practitioners actually use (`methods`, on `hpo_env.schedules`). It is a task
provider of the evaluation core (`agents.benchmark.core`): runs go through the
core's executor (`parallel`), finished ones into a resume cache keyed on the code
and the bundle (`cache`), the objectives into a `FinalTable` read by the shared
statistics and the one oracle (`summary`), and the one report writer (`report`).
`protocol.run_transfer` ties them together; `rl` is the SB3 suite.
"""
