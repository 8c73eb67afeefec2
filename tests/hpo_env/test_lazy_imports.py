"""The deploy path stays light: importing `hpo_env` and the deployed scheduler loads no
stable-baselines3 (the vec env loads it on first use)."""

import subprocess
import sys


def test_hpo_env_and_deploy_import_without_stable_baselines3():
    code = (
        "import sys, hpo_env, agents.deploy.scheduler\n"
        "assert 'stable_baselines3' not in sys.modules, 'SB3 imported at import time'\n"
        "from hpo_env import make_vec_env\n"
        "assert callable(make_vec_env) and 'stable_baselines3' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
