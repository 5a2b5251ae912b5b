"""The policy engine of the on-policy loop: plain Python + torch/transformers/trl, no Django. See docs/training-engine.md.

`config`, `data`, `results` and `pairs` import no torch, so the Django side can build configs and
pick pairs cheaply; `policy`, `sampling`, `dpo`, `ppo`, `best_of_n` and `metrics` need torch.
"""
