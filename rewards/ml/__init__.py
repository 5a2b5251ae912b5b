"""The reward-model engine: plain Python + torch, no Django. See docs/reward-models.md.

Modules import torch lazily where they can, so `from rewards.ml.config import RewardTrainConfig`
stays cheap; `train`, `score` and `artifact` need torch and transformers.
"""
