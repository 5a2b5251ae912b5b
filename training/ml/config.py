"""Frozen configs of the policy engine: sampling, the demo policy, and the three update methods.

Every config round-trips through `as_dict()` / `from_dict()` (JSON-safe, nested SamplerParams
included), so a Policy row stores exactly what produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from rewards.ml.config import LoraSettings

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust")
DEMO_ARCHITECTURES = ("llama", "gpt2")


class _Config:
    """as_dict / from_dict shared by the configs; unknown keys are an error so typos never pass silently."""

    def as_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]  # every subclass is a dataclass
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options: {unknown}")
        values = dict(data)
        if "sampler" in values and isinstance(values["sampler"], dict):
            values["sampler"] = SamplerParams.from_dict(values["sampler"])
        return cls(**values)


def _check_lora(config) -> None:
    """A lora dict becomes LoraSettings (bounded there); None means full fine-tuning."""
    object.__setattr__(config, "lora", LoraSettings.from_value(config.lora))


def _positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None or value <= 0:
            raise ValueError(f"{name} must be positive (got {value!r})")


@dataclass(frozen=True)
class SamplerParams(_Config):
    """How completions are drawn; recorded with every completion (provenance)."""

    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    top_k: int = 0  # 0 (or -1, stored as 0): off, every token is a candidate; k: only the k most likely

    def __post_init__(self) -> None:
        if self.top_k == -1:  # vLLM's older spelling of "off"
            object.__setattr__(self, "top_k", 0)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be 0 or -1 (off) or a positive integer (got {self.top_k!r})")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        _positive(self, "max_new_tokens")


@dataclass(frozen=True)
class DemoPolicyConfig(_Config):
    """A small causal LM (Llama or GPT-2 shape) on MiniLM's tokenizer, SFT'd on question/answer text
    (see policy.build_demo_policy). The defaults fit the demo corpus on 2 CPU cores in a few minutes."""

    architecture: str = "llama"  # llama (RMSNorm, rotary, SwiGLU) | gpt2
    n_layer: int = 4
    n_embd: int = 192
    n_head: int = 4
    max_length: int = (
        160  # tokens of prompt + answer in SFT; the model's n_positions is max(max_length, 512) (policy.py)
    )
    steps: int = 700
    lr: float = 2e-3
    batch_size: int = 16
    seed: int = 0
    warmup_steps: int = 30
    max_sentences: int = 4  # answers are cut at sentence ends into 1..max_sentences-sentence examples
    dropout: float = 0.0
    vocab_size: int | None = 8192  # corpus-trimmed MiniLM vocabulary (see policy.demo_tokenizer); None: all 30,522
    eval_fraction: float = 0.05  # share of prompts whose answers are held out for the perplexity (seeded hash)

    LIMITS = {
        "n_layer": 48,
        "n_embd": 4096,
        "n_head": 64,
        "max_length": 4096,
        "steps": 100_000,
        "batch_size": 1024,
        "max_sentences": 64,
        "warmup_steps": 100_000,
    }

    def __post_init__(self) -> None:
        _positive(self, "n_layer", "n_embd", "n_head", "steps", "lr", "batch_size", "max_sentences")
        for name, high in self.LIMITS.items():
            if getattr(self, name) > high:
                raise ValueError(f"{name} must be at most {high} (got {getattr(self, name)!r})")
        if self.architecture not in DEMO_ARCHITECTURES:
            raise ValueError(f"architecture must be one of {list(DEMO_ARCHITECTURES)} (got {self.architecture!r})")
        if self.n_embd % self.n_head:
            raise ValueError("n_embd must be a multiple of n_head")
        if self.max_length < 16:
            raise ValueError("max_length must be at least 16")
        if self.vocab_size is not None and not 256 <= self.vocab_size <= 30_522:
            raise ValueError("vocab_size must be between 256 and 30522 (or None for the full vocabulary)")
        if not 0.0 <= self.eval_fraction < 0.5:
            raise ValueError(f"eval_fraction must be in [0, 0.5) (got {self.eval_fraction!r})")


@dataclass(frozen=True)
class DPOConfig(_Config):
    """Direct preference optimisation against the frozen reference (trl's DPOTrainer)."""

    beta: float = 0.1
    # Defaults suit the demo policy (a ~1M-parameter GPT-2 from scratch); a pretrained LLM wants ~5e-7..1e-6.
    lr: float = 5e-4
    max_steps: int = 40
    batch_size: int = 16
    max_length: int = 192  # prompt + completion tokens (trl truncates beyond)
    seed: int = 0
    loss_type: str = "sigmoid"
    grad_accum: int = 1
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    bf16: bool | None = None  # None: on when the GPU supports it, off on CPU
    lora: LoraSettings | None = None  # LoRA adapters; the reference is then the base with adapters disabled
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _check_lora(self)
        _positive(self, "beta", "lr", "max_steps", "batch_size", "max_length", "grad_accum")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}")


@dataclass(frozen=True)
class PPOConfig(_Config):
    """PPO with a KL penalty to the reference: maximise J = E[r] − β·KL(π‖π_ref) (see ppo.py)."""

    lr: float = 1e-3  # demo-policy scale; ~1e-6 for a pretrained LLM
    max_steps: int = 8  # PPO updates: each is one rollout of batch_size prompts + ppo_epochs passes
    batch_size: int = 32  # prompts per rollout (one response each)
    mini_batch_size: int = 16
    ppo_epochs: int = 2
    clip: float = 0.2  # ε of the clipped surrogate
    vf_coef: float = 0.5
    vf_clip: float | None = 0.2  # clip of the value update; None: plain squared error
    kl_coef: float = 0.05  # β (the starting β when adaptive)
    adaptive_kl: bool = False
    target_kl: float = 6.0  # nats per sequence, for the adaptive controller
    kl_horizon: int = 10000  # Ziegler et al.'s K_β horizon (in samples)
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    # Scores standardised over each rollout batch ((r − mean) / std) before the KL term is added:
    # a Bradley-Terry reward model's scale is arbitrary (its rewards may span 0.01), β should not depend on it.
    normalize_rewards: bool = True
    reward_scale: float = 1.0  # multiplies the (normalised) scores
    value_lr: float | None = None  # None: lr
    max_grad_norm: float = 1.0
    sampler: SamplerParams = field(default_factory=SamplerParams)
    seed: int = 0
    lora: LoraSettings | None = None  # LoRA adapters; the reference is then the base with adapters disabled
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _check_lora(self)
        _positive(
            self, "lr", "max_steps", "batch_size", "mini_batch_size", "ppo_epochs", "clip", "target_kl", "kl_horizon"
        )
        if self.kl_coef < 0 or self.vf_coef < 0:
            raise ValueError("kl_coef and vf_coef must be >= 0")
        if not (0.0 <= self.gamma <= 1.0 and 0.0 <= self.lam <= 1.0):
            raise ValueError("gamma and lam must be in [0, 1]")
        if self.sampler.temperature == 0:
            raise ValueError("sampler.temperature must be > 0 for PPO (rollouts must be stochastic)")
        if self.sampler.top_p < 1.0:
            # Ratios, advantages and the KL penalty use the full softmax: rollouts must come from it.
            raise ValueError(
                f"sampler.top_p must be 1 for PPO (got {self.sampler.top_p}): its log-probs, ratios and "
                "KL penalty are those of the full distribution, so nucleus-truncated rollouts would bias them"
            )


@dataclass(frozen=True)
class BestOfNConfig(_Config):
    """Rejection sampling: n samples per prompt, keep the best by reward, SFT on the kept ones."""

    n: int = 4
    lr: float = 1e-3  # demo-policy scale; ~1e-5 for a pretrained LLM
    epochs: int = 2
    max_steps: int | None = None  # caps epochs
    batch_size: int = 16
    max_length: int = 192
    sampler: SamplerParams = field(default_factory=SamplerParams)
    seed: int = 0
    lora: LoraSettings | None = None  # LoRA adapters on the policy (saved as an adapter checkpoint)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        _check_lora(self)
        _positive(self, "n", "lr", "epochs", "batch_size", "max_length")
        if self.n < 2:
            raise ValueError("n must be at least 2 (best of one is no selection)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be positive")


__all__ = ["SamplerParams", "DemoPolicyConfig", "DPOConfig", "PPOConfig", "BestOfNConfig"]
