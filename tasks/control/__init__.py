"""Control tasks: the base network is an RL policy trained on a classic-control system.

Batched torch physics (`physics`) validated against Gymnasium, a batched
actor-critic learner (`learner`), task configurations and families (`tasks`).
"""
