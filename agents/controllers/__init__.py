"""Whatever decides a run's hyperparameters: one `Controller` protocol, the rollout that drives it, the learned policy and the baselines."""
