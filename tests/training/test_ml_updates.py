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

    groups = TransformersSampler(policy_path).generate(
        prompt_list, n=n, params=SamplerParams(**{**PARAMS, "seed": seed})
    )
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
        policy_path=demo_policy.path,
        reference_path=demo_policy.path,
        examples=examples,
        out_dir=tmp_path / "dpo",
        config=DPOConfig(beta=0.1, lr=1e-3, max_steps=15, batch_size=16, max_length=96),
        progress=lambda step, total, metrics: seen.append((step, total)),
    )
    assert (tmp_path / "dpo" / "model.safetensors").is_file()
    assert result.metrics["steps"] == 15 and len(result.curve) == 15 and seen[-1] == (15, 15)
    before, after = (mean_tokens(demo_policy.path, eval_prompts), mean_tokens(result.path, eval_prompts))
    assert after > before * 1.2, (before, after)


def test_ppo_with_a_length_reward_makes_fresh_samples_longer(demo_policy, tmp_path):
    from training.ml.config import PPOConfig, SamplerParams
    from training.ml.ppo import train_ppo

    train_prompts, eval_prompts = prompts(32, seed=1), prompts(16, seed=2)
    result = train_ppo(
        policy_path=demo_policy.path,
        reference_path=demo_policy.path,
        prompts=train_prompts,
        reward_fn=length_reward,
        out_dir=tmp_path / "ppo",
        config=PPOConfig(
            lr=2e-3,
            max_steps=8,
            batch_size=32,
            mini_batch_size=16,
            ppo_epochs=2,
            kl_coef=0.02,
            sampler=SamplerParams(max_new_tokens=48),
        ),
    )
    assert (tmp_path / "ppo" / "value_head.safetensors").is_file()
    assert len(result.curve) == 8 and result.curve[-1]["mean_reward"] > result.curve[0]["mean_reward"]
    before, after = (mean_tokens(demo_policy.path, eval_prompts), mean_tokens(result.path, eval_prompts))
    assert after > before * 1.2, (before, after)


def test_best_of_n_with_a_length_reward_makes_fresh_samples_longer(demo_policy, tmp_path):
    from training.ml.best_of_n import train_best_of_n
    from training.ml.config import BestOfNConfig, SamplerParams

    train_prompts, eval_prompts = prompts(32, seed=1), prompts(16, seed=2)
    result = train_best_of_n(
        policy_path=demo_policy.path,
        prompts=train_prompts,
        reward_fn=length_reward,
        out_dir=tmp_path / "bon",
        config=BestOfNConfig(n=4, lr=2e-3, epochs=4, batch_size=16, sampler=SamplerParams(max_new_tokens=48)),
    )
    assert result.metrics["mean_reward_kept"] > result.metrics["mean_reward_all"]
    before, after = (mean_tokens(demo_policy.path, eval_prompts), mean_tokens(result.path, eval_prompts))
    assert after > before * 1.2, (before, after)


@pytest.fixture(scope="module")
def length_reward_model(demo_policy, tmp_path_factory):
    """A tiny Bradley-Terry reward model (rewards.ml) trained on the policy's own samples, longer preferred."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from rewards.ml.backbone import load_base
    from rewards.ml.config import RewardTrainConfig
    from rewards.ml.data import PreferencePair
    from rewards.ml.score import RewardScorer
    from rewards.ml.train import train_reward_model

    examples = longer_preferred_pairs(demo_policy.path, prompts(48, seed=3), seed=11)
    pairs = [PreferencePair(prompt=e.prompt, chosen=e.chosen, rejected=e.rejected) for e in examples]
    config = RewardTrainConfig(lr=2e-3, epochs=3, batch_size=16, max_length=96, eval_fraction=0.0)
    _, tokenizer = load_base(config)
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            num_labels=1,
        )
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    result = train_reward_model(config, pairs, [], model=model, tokenizer=tokenizer)
    return RewardScorer(model=result.model, tokenizer=result.tokenizer, max_length=96)


def test_ppo_against_a_reward_model_that_learned_length_makes_fresh_samples_longer(
    demo_policy, length_reward_model, tmp_path
):
    from training.ml.config import PPOConfig, SamplerParams
    from training.ml.ppo import train_ppo

    short, long = ("a city.", "a city is full of streets. people visit a city to see the streets. it is calm.")
    assert (
        length_reward_model.score(["What is a city?"] * 2, [long, short])[0]
        > length_reward_model.score(["What is a city?"] * 2, [long, short])[1]
    )
    train_prompts, eval_prompts = prompts(32, seed=1), prompts(16, seed=2)
    result = train_ppo(
        policy_path=demo_policy.path,
        reference_path=demo_policy.path,
        prompts=train_prompts,
        reward_fn=length_reward_model.score,
        out_dir=tmp_path / "ppo-rm",
        config=PPOConfig(
            lr=2e-3,
            max_steps=8,
            batch_size=32,
            mini_batch_size=16,
            ppo_epochs=2,
            kl_coef=0.02,
            sampler=SamplerParams(max_new_tokens=48),
        ),
    )
    before, after = (mean_tokens(demo_policy.path, eval_prompts), mean_tokens(result.path, eval_prompts))
    assert after > before * 1.2, (before, after)


def test_a_stopped_dpo_update_raises_and_writes_no_policy(demo_policy, tmp_path):
    from training.ml.config import DPOConfig
    from training.ml.data import PreferenceExample
    from training.ml.dpo import train_dpo
    from training.ml.results import TrainingStopped

    examples = [PreferenceExample("What is a river?", "a river is full of water. it is calm.", "a river.")] * 8
    with pytest.raises(TrainingStopped, match="stopped at step 1"):
        train_dpo(
            policy_path=demo_policy.path,
            reference_path=demo_policy.path,
            examples=examples,
            out_dir=tmp_path / "dpo",
            config=DPOConfig(max_steps=5, batch_size=4),
            should_stop=lambda: True,
        )
    assert not list(tmp_path.iterdir())
