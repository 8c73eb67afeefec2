#!/usr/bin/env bash
# The checks that need a GPU, as one run on a CUDA machine (about 10 minutes on an H200,
# more than one 10-minute device call: run its steps in two calls if needed):
# the CUDA parity tests, `hpo-rl bench engine --device cuda` on two CPU cores (so its CPU
# figures are a 2-core machine's, measured side by side), and a smoke meta-training on the
# device. Logs go to the folder given (default gpu_check/).
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#
# The project must be installed (`pip install -e ".[dev]"`, or with --no-deps where torch,
# gymnasium and stable-baselines3 are there already): the task distributions are found
# through its entry points.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled WANDB_SILENT=true MPLBACKEND=Agg OMP_NUM_THREADS=2

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

timeout 150 python3 -m pytest -q -p no:cacheprovider \
  tests/hpo_env/test_cuda_parity.py tests/agents/deploy/test_scheduler_torch.py 2>&1 | tee "$out/tests.log"

# The 10x target first (the `default` preset, CPU on 2 threads against the device at
# 1,024 envs, three alternating pairs of whole rounds: about 2 minutes on an H200), so
# that the number that matters is logged even if a later step runs out of time.
timeout 240 taskset -c 0,1 python3 - <<'PY' 2>&1 | tee "$out/default_speedup.log"
import torch

from agents.perf.device_scaling import preset_device_table
from agents.train.config import get_preset

preset_device_table(
    {"default": get_preset("default")}, torch.device("cuda"), control_family=None, repeats=3
)
PY

# Every code path in seconds first, so a failure shows before the long run.
timeout 100 taskset -c 0,1 python3 -m agents.cli bench engine --device cuda --quick 2>&1 \
  | tee "$out/bench_engine_quick.log"
timeout 90 python3 -m agents.cli train --preset smoke --device cuda --wandb-mode disabled \
  --out-dir "$(mktemp -d)/smoke" 2>&1 | tail -n 30 | tee "$out/train_smoke.log"

timeout 360 taskset -c 0,1 python3 -m agents.cli bench engine --device cuda 2>&1 \
  | tee "$out/bench_engine.log"
