"""The policy updates move behaviour the way the preference asks: "longer is better" makes fresh samples longer."""
from __future__ import annotations

import itertools
import statistics

import pytest

from tests.training.conftest import length_reward, prompts

pytestmark = pytest.mark.slow

PARAMS = dict(temperature=1.0, top_p=1.0, max_new_tokens=48, seed=123)


def mean_tokens(policy_path, prompt_list, *, n: int = 4) -> float:
    from training.ml.config import SamplerParams
    from training.ml.sampling import TransformersSampler

    groups = TransformersSampler(policy_path).generate(prompt_list, n=n, params=SamplerParams(**PARAMS))
    return statistics.mean(s.num_tokens for group in groups for s in group)


def longer_preferred_pairs(policy_path, prompt_list, *, n: int = 4, seed: int = 7):
    """Round-1 pairs labelled by a scripted annotator who always prefers the longer answer (no ties)."""
    from training.ml.config import SamplerParams
    from training.ml.data import PreferenceExample
    from training.ml.sampling import TransformersSampler

    groups = TransformersSampler(policy_path).generate(prompt_list, n=n, params=SamplerParams(**{**PARAMS, "seed": seed}))
    examples = []
    for prompt, group in zip(prompt_list, groups):
        for a, b in itertools.combinations(group, 2):
            if a.num_tokens != b.num_tokens:
                long, short = (a, b) if a.num_tokens > b.num_tokens else (b, a)
                examples.append(PreferenceExample(prompt=prompt, chosen=long.text, rejected=short.text))
    return examples


def test_dpo_on_longer_is_better_pairs_makes_fresh_samples_longer(demo_policy, tmp_path):
    from training.ml.config import DPOConfig
    from training.ml.dpo import train_dpo

    train_prompts, eval_prompts = prompts(24, seed=1), prompts(16, seed=2)
    examples = longer_preferred_pairs(demo_policy.path, train_prompts)
    seen = []
    result = train_dpo(
        policy_path=demo_policy.path, reference_path=demo_policy.path, examples=examples, out_dir=tmp_path / "dpo",
        config=DPOConfig(beta=0.1, lr=1e-3, max_steps=15, batch_size=16, max_length=96),
        progress=lambda step, total, metrics: seen.append((step, total)),
    )
    assert (tmp_path / "dpo" / "model.safetensors").is_file()
    assert result.metrics["steps"] == 15 and len(result.curve) == 15 and seen[-1] == (15, 15)
    before, after = mean_tokens(demo_policy.path, eval_prompts), mean_tokens(result.path, eval_prompts)
    assert after > before * 1.2, (before, after)
