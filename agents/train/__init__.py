"""Meta-training a tuning policy with PPO: config and presets, the trainer, checkpoints, callbacks, export."""
