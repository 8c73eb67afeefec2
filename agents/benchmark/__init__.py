"""Evaluation that cannot flatter the policy: one core, three task providers.

- `core`: tasks x methods x seeds -> `FinalTable` of final objectives, and the one
  oracle (`choose_oracle`, per task); `executor`: where work items run (here, local
  processes, Ray); `stats`: strict wins, IQM with bootstrap CIs, robustness, targets;
  `report_files`: the one writer of ``results.json``, ``results.md`` and figures.
- Held-out families (`hpo-rl benchmark`): `config`, `methods` (batched controllers),
  `work` (the task provider), `summary`, `report`, `protocol`, `pbt`.
- Plain-PyTorch transfer suites and the RL suite (`hpo-rl transfer`): `transfer`.
"""
