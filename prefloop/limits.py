"""Upper bounds of every job parameter (settings.PREFLOOP_LIMITS), checked before anything is queued.

A job's size comes from numbers a researcher types: steps, epochs, batch sizes, sequence lengths,
model sizes, completions per prompt. Each has a bound here, keyed "<scope>.<field>"; a deployment
overrides any of them in PREFLOOP_LIMITS (a key it leaves out keeps its default). The services check
a request against these before they write a row or queue a job, and refuse with an error naming
the field. Plain Python: Django settings are read only when a check runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefloop.core.errors import PrefloopError

DEFAULT_LIMITS: dict[str, int] = {
    # reward-model training (rewards.ml.config.RewardTrainConfig)
    "reward.max_steps": 100_000,
    "reward.epochs": 100,
    "reward.batch_size": 1024,
    "reward.eval_batch_size": 4096,
    "reward.grad_accum": 1024,
    "reward.max_length": 8192,
    "reward.min_prompt_tokens": 8192,
    "reward.eval_every": 100_000,
    "reward.max_train_pairs": 10_000_000,
    "reward.max_eval_pairs": 1_000_000,
    # the demo policy (training.ml.config.DemoPolicyConfig): at most a GPT-2 small (124M parameters)
    "demo_policy.n_layer": 12,
    "demo_policy.n_embd": 768,
    "demo_policy.n_head": 64,
    "demo_policy.max_length": 1024,
    "demo_policy.steps": 100_000,
    "demo_policy.batch_size": 1024,
    "demo_policy.warmup_steps": 100_000,
    "demo_policy.max_sentences": 100,
    "demo_policy.vocab_size": 30_522,
    # a round (training.params.RoundParams; its LIMITS hold the same defaults and the lower bounds)
    "round.prompts": 10_000,
    "round.k": 16,
    "round.pairs_per_prompt": 120,
    "round.max_new_tokens": 4096,
    # the policy update of a round (DPOConfig, PPOConfig, BestOfNConfig; sampler = its SamplerParams)
    "update.max_steps": 100_000,
    "update.epochs": 100,
    "update.ppo_epochs": 100,
    "update.batch_size": 1024,
    "update.mini_batch_size": 1024,
    "update.grad_accum": 1024,
    "update.max_length": 8192,
    "update.warmup_steps": 100_000,
    "update.n": 64,
    "update.max_new_tokens": 4096,
    # projects
    "project.aspects": 32,
    "project.aspect_name_length": 64,
    # the record browser: pages of 20 comparisons a filter may page through
    "records.pages": 10_000,
}


class OutOfBounds(ValueError):
    """A parameter outside its bound; `field` names it as the request spelled it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def limit(key: str, default: int | None = None) -> int:
    """The bound of `key` ("scope.field"): settings.PREFLOOP_LIMITS, else DEFAULT_LIMITS, else default."""
    from django.conf import settings

    configured = getattr(settings, "PREFLOOP_LIMITS", None) or {}
    if key in configured:
        return int(configured[key])
    if key in DEFAULT_LIMITS:
        return DEFAULT_LIMITS[key]
    if default is None:
        raise KeyError(f"no limit named {key!r}")
    return default


def check_limits(values: Mapping, *, scope: str, prefix: str = "") -> None:
    """Raise OutOfBounds for the first bounded field of `values` (a config's as_dict()) that is not a
    whole number in [0, limit]. Nested dicts (a sampler) are checked field by field under the same
    scope. prefix: how the request names the container, e.g. "update." -> field "update.max_steps"."""
    for name, value in values.items():
        if isinstance(value, Mapping):
            check_limits(value, scope=scope, prefix=f"{prefix}{name}.")
            continue
        key = f"{scope}.{name}"
        if key not in DEFAULT_LIMITS or value is None:
            continue
        check_whole_number(f"{prefix}{name}", value, high=limit(key))


def check_whole_number(field: str, value, *, high: int, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OutOfBounds(field, f"must be a whole number between {low} and {high}, got {_shown(value)}")
    if not low <= value <= high:
        raise OutOfBounds(field, f"must be between {low} and {high} (PREFLOOP_LIMITS), got {_shown(value)}")
    return value


def _shown(value) -> str:
    # str() of an int over 4,300 digits raises ValueError: describe a huge one instead of printing it
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def field_error(error_class: type[PrefloopError], exc: OutOfBounds, *, prefix: str = "") -> PrefloopError:
    """A domain error (a 400 through the API's handler) carrying the field: {"field": "update.max_steps"}."""
    error = error_class(f"{prefix}{exc}")
    error.field = f"{prefix}{exc.field}"
    return error
