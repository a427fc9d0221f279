"""Encoders, pre-training, the RL policy and rule baselines."""
