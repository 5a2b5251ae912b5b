"""Round parameters: one frozen dataclass, validated field by field with errors that name the field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from prefloop.limits import limit
from training.errors import InvalidRoundParams

PAIR_STRATEGIES = ("all", "random", "uncertain")
REWARD_RETRAIN = ("bounded", "full")
METHODS = ("dpo", "ppo", "best_of_n")


@dataclass(frozen=True)
class RoundParams:
    prompts: int = 40  # prompts sampled this round (held-out evaluation prompts are never used)
    k: int = 4  # completions per prompt from the current policy
    pair_strategy: str = "all"  # all | random | uncertain (smallest |Δr| under the current reward model)
    pairs_per_prompt: int = 6
    previous_samples: int = 1  # completions per prompt from the parent policy, paired with new ones (human win rate)
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 48
    seed: int = 0
    ai_feedback: bool = False  # the current reward model votes too, kept apart from human votes
    auto_advance: bool = True  # go on to the reward model as soon as every comparison reached its target
    min_votes: int = 1  # human votes needed before a researcher may advance early
    update: dict = field(default_factory=dict)  # DPOConfig / PPOConfig / BestOfNConfig overrides
    reward_model: dict = field(default_factory=dict)  # reward-model training options (rewards app)
    judge_labels: dict = field(
        default_factory=dict
    )  # DPO also on LLM-judge labels: {"min_probability", "max_pairs"} (judging/uses.py)
    # The reward-model step and the guard before the policy moves (see training/rounds.md).
    reward_retrain: str = (
        "bounded"  # bounded: warm start + this round's pairs + a replay sample; full: all, from scratch
    )
    reward_replay_pairs: int = 256  # older pairs replayed beside this round's (bounded)
    reward_max_new_pairs: int = 5000  # at most this many of this round's pairs (bounded)
    min_held_out_pairs: int = 20  # PPO / best-of-N wait below this many held-out pairs (or an interval that includes ½)

    REWARD_STEP_LIMITS = {
        "reward_replay_pairs": (0, 50_000),
        "reward_max_new_pairs": (1, 50_000),
        "min_held_out_pairs": (0, 100_000),
    }

    LIMITS = {
        "prompts": (1, 10_000),
        "k": (1, 16),
        "pairs_per_prompt": (1, 120),
        "previous_samples": (0, 4),
        "max_new_tokens": (1, 4096),
        "seed": (0, 2**31 - 1),
        "min_votes": (0, 10**6),
    }

    @classmethod
    def from_dict(cls, data: dict | None) -> RoundParams:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRoundParams(f"unknown round parameter(s) {unknown}; known: {sorted(known)}")
        clean: dict = {}
        for f in fields(cls):
            if f.name not in data or data[f.name] is None:
                continue
            value = data[f.name]
            clean[f.name] = _coerce(f.name, value, f.type)
        params = cls(**clean)
        params.check()
        return params

    def check(self) -> None:
        for name, (low, high) in self.LIMITS.items():
            high = limit(f"round.{name}", high)  # settings.PREFLOOP_LIMITS may move the upper bound
            value = getattr(self, name)
            if not low <= value <= high:
                raise InvalidRoundParams(f"{name} must be between {low} and {high}, got {value}")
        if not 0.0 < self.temperature <= 5.0:
            raise InvalidRoundParams(f"temperature must be in (0, 5], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRoundParams(f"top_p must be in (0, 1], got {self.top_p}")
        if self.pair_strategy not in PAIR_STRATEGIES:
            raise InvalidRoundParams(
                f"pair_strategy must be one of {list(PAIR_STRATEGIES)}, got {self.pair_strategy!r}"
            )
        if self.k < 2 and self.previous_samples == 0:
            raise InvalidRoundParams("k must be at least 2 (or previous_samples at least 1) to make pairs")
        self._check_reward_step()

    def _check_reward_step(self) -> None:
        for name, (low, high) in self.REWARD_STEP_LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise InvalidRoundParams(f"{name} must be between {low} and {high}, got {value}")
        if self.reward_retrain not in REWARD_RETRAIN:
            raise InvalidRoundParams(
                f"reward_retrain must be one of {list(REWARD_RETRAIN)}, got {self.reward_retrain!r}"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    def sampler(self, *, seed_offset: int = 0) -> dict:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed + seed_offset,
        }


def _coerce(name: str, value, type_name) -> object:
    type_name = str(type_name)
    try:
        if type_name == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if type_name == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if type_name == "str":
            return str(value)
        if type_name == "dict":
            if not isinstance(value, dict):
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    raise InvalidRoundParams(f"{name} must be a {type_name}, got {value!r}")
