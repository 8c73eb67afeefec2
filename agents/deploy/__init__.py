"""The policy in a user's run: run statistics, the torch scheduler, the stable-baselines3 callback."""
