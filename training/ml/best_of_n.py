"""Best-of-N rejection sampling (Llama 2, DeepSeek R1): N samples per prompt, keep the best by reward, SFT on them.

The kept responses are trained with the policy's own tokens (eos included when the sample
ended), so the update imitates exactly what it was rewarded for: L = −Σ_t log π(y*_t | x, y*_<t).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewards.ml.chat import PromptLike
from training.ml.config import BestOfNConfig
from training.ml.results import UpdateResult

RewardFn = Callable[[list[PromptLike], list[str]], list[float]]  # (prompts as given, responses)
Progress = Callable[[int, int, dict], None]

if TYPE_CHECKING:
    from training.ml.sampling import Rollout


def _keep_best(
    rollouts: list[Rollout], rewards: list[float], prompt_count: int, n: int
) -> tuple[list[Rollout], list[float]]:
    """Each prompt's highest-reward rollout (ties keep the first drawn) and its reward."""
    kept, kept_rewards = [], []
    for i in range(prompt_count):
        group = range(i * n, (i + 1) * n)
        best = max(group, key=lambda j: (rewards[j], -j))
        kept.append(rollouts[best])
        kept_rewards.append(rewards[best])
    return kept, kept_rewards


def _sft_examples(kept: list[Rollout], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(ids, loss mask) per kept rollout: the response cut to fit, the prompt's end before it."""
    examples = []
    for rollout in kept:
        response = rollout.response_ids[: max_length - 1]
        prompt_ids = rollout.prompt_ids[
            max(0, len(rollout.prompt_ids) - (max_length - len(response))) :
        ]  # keep its end
        ids = prompt_ids + response
        mask = [0] * len(prompt_ids) + [1] * len(response)
        examples.append((ids, mask))
    return examples


def _summary(
    rollouts: list[Rollout],
    rewards: list[float],
    kept: list[Rollout],
    kept_rewards: list[float],
    prompt_count: int,
    config: BestOfNConfig,
) -> dict[str, Any]:
    """The sampling half of the run's metrics: rewards and lengths of all samples and of the kept."""
    from training.ml.sampling import truncation_report

    token_counts = [len(r.response_ids) - int(r.finished) for r in rollouts]
    kept_tokens = [len(r.response_ids) - int(r.finished) for r in kept]
    return {
        "method": "best_of_n",
        "prompts": prompt_count,
        "n": config.n,
        "samples": len(rollouts),
        "mean_reward_all": sum(rewards) / len(rewards),
        "mean_reward_kept": sum(kept_rewards) / len(kept_rewards),
        "mean_tokens_all": sum(token_counts) / len(token_counts),
        "mean_tokens_kept": sum(kept_tokens) / len(kept_tokens),
        "truncation": truncation_report(
            [p for i in range(prompt_count) if (p := rollouts[i * config.n].prompt) is not None]
        ),
        "lora": config.lora is not None,
    }


def train_best_of_n(
    *,
    policy_path: Path | str,
    prompts: Sequence[PromptLike],
    reward_fn: RewardFn,
    out_dir: Path | str,
    config: BestOfNConfig = BestOfNConfig(),
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> UpdateResult:
    """Sample config.n responses per prompt, keep each prompt's highest-reward one, SFT the policy on them.

    Ties in reward keep the first sample drawn. progress(step, total, metrics) per optimiser step;
    should_stop() True raises TrainingStopped (nothing saved).
    """
    import math

    import torch

    from training.ml.policy import load_for_update, save_policy
    from training.ml.sampling import generate_ids, to_sample
    from training.ml.sft import sft_train

    prompts = [p for p in prompts if not isinstance(p, str) or p.strip()]
    if not prompts:
        raise ValueError("no prompts")
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(config.seed)
    model, tokenizer, _, lineage = load_for_update(
        policy_path, None, device=device, lora=config.lora, gradient_checkpointing=config.gradient_checkpointing
    )
    rollouts = generate_ids(model, tokenizer, prompts, n=config.n, params=config.sampler)
    texts = [to_sample(tokenizer, r, config.sampler.seed).text for r in rollouts]
    rewards = [float(r) for r in reward_fn([prompts[r.prompt_index] for r in rollouts], texts)]
    kept, kept_rewards = _keep_best(rollouts, rewards, len(prompts), config.n)
    examples = _sft_examples(kept, config.max_length)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    steps = config.max_steps or config.epochs * steps_per_epoch
    curve = sft_train(
        model,
        examples,
        steps=steps,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        pad_token_id=tokenizer.pad_token_id,
        progress=progress,
        should_stop=should_stop,
    )
    metrics = {
        **_summary(rollouts, rewards, kept, kept_rewards, len(prompts), config),
        "steps": len(curve),
        "loss_first": curve[0]["loss"] if curve else None,
        "loss_last": curve[-1]["loss"] if curve else None,
        "seconds": time.perf_counter() - started,
        "device": device,
    }
    meta = {
        "method": "best_of_n",
        "parent": str(policy_path),
        "config": config.as_dict(),
        "metrics": metrics,
        **lineage,
    }
    path = save_policy(model.to("cpu"), tokenizer, Path(out_dir), meta=meta)
    return UpdateResult(path=str(path), metrics=metrics, curve=curve)


__all__ = ["train_best_of_n"]
