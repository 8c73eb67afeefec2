"""The Hugging Face Trainer steps a `TuningScheduler` itself; `TuningTrainerCallback`
feeds the logged losses. A tiny GPT-2 built from a config: nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from agents.deploy.scheduler import TuningScheduler
from tests.agents.support.scheduler_fixtures import MlpStandInPolicy

transformers = pytest.importorskip("transformers", reason="the [hf] extra is not installed")

N_STEPS, INTERVAL = 120, 10


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 256, length: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        start = torch.randint(0, 40, (n, 1), generator=g)
        self.ids = (start + torch.arange(length)) % 48  # a learnable counting pattern

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


@pytest.mark.slow  # importing transformers takes seconds
def test_trainer_runs_the_policy_from_its_logs(tmp_path):
    from agents.deploy.hf import TuningTrainerCallback

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=48,
        n_positions=16,
        n_embd=32,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    used: list[float] = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    sched = TuningScheduler(
        MlpStandInPolicy(seed=2), opt, total_steps=N_STEPS, control_interval=INTERVAL
    )
    logged: list[tuple[int, float]] = []

    class Record(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                logged.append((state.global_step, logs["loss"]))

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=N_STEPS,
        per_device_train_batch_size=8,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=50,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=_Tokens(),
        eval_dataset=_Tokens(32),
        optimizers=(opt, sched),
        callbacks=[TuningTrainerCallback(), Record()],
    )
    trainer.train()
    assert sched.steps_done == N_STEPS == len(used)
    assert len(sched.history) == 1 + N_STEPS // INTERVAL
    losses = dict(logged)
    for before, entry in zip(sched.history, sched.history[1:]):
        # The rates the optimizer used between two decisions are the earlier one's:
        # each decision reached the optimizer before the next update.
        assert set(used[before["step"] : entry["step"]]) == {before["lrs"][0]}
        steps = range(before["step"] + 1, entry["step"] + 1)
        mean = sum(losses[s] for s in steps) / INTERVAL
        assert entry["loss"] == pytest.approx(mean, rel=1e-6)
    assert len({h["lrs"][0] for h in sched.history}) > 1  # the policy moved the rate
    assert [h["val_step"] for h in sched.history if h["val_step"] is not None] == [50, 100]


def test_a_trainer_logging_too_rarely_is_refused(tmp_path):
    from agents.deploy.hf import TuningTrainerCallback
    from hpo_env.errors import ConfigError

    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    sched = TuningScheduler(MlpStandInPolicy(), opt, total_steps=100, control_interval=10)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), logging_steps=500, report_to=[])
    state = transformers.TrainerState()
    with pytest.raises(ConfigError, match="logging_steps=1"):
        TuningTrainerCallback().on_train_begin(args, state, None, lr_scheduler=sched)
