"""Pair selection for labeling and the engine's configs (no torch needed)."""

from __future__ import annotations

import pytest

from training.ml.config import BestOfNConfig, DemoPolicyConfig, DPOConfig, PPOConfig, SamplerParams
from training.ml.pairs import select_pairs


def test_all_pairs_are_every_unordered_pair_per_prompt():
    assert select_pairs([[1, 2, 3], [4, 5]], strategy="all") == [(1, 2), (1, 3), (2, 3), (4, 5)]


def test_random_pairs_are_seeded_and_capped_per_prompt():
    groups = [[1, 2, 3, 4], [5, 6, 7, 8]]
    first = select_pairs(groups, strategy="random", per_prompt=2, seed=3)
    assert first == select_pairs(groups, strategy="random", per_prompt=2, seed=3)
    assert len(first) == 4 and all({a, b} <= set(groups[0]) or {a, b} <= set(groups[1]) for a, b in first)


def test_uncertain_prefers_small_reward_gaps_without_reusing_one_completion():
    # 1, 2 and 3 are close, 4 far off; a gap-only pick would take (1,2), (2,3), (1,3)
    rewards = {1: 0.0, 2: 0.01, 3: 0.05, 4: 5.0}
    pairs = select_pairs([[1, 2, 3, 4]], strategy="uncertain", per_prompt=2, rewards=rewards)
    assert pairs[0] == (1, 2)
    assert pairs[1] == (3, 4)  # the only pair of unused completions comes before reusing 1 or 2
    more = select_pairs([[1, 2, 3, 4]], strategy="uncertain", per_prompt=3, rewards=rewards)
    assert more[2] == (2, 3)  # then the smallest gap among pairs reusing one completion once


def test_uncertain_needs_a_reward_for_every_completion():
    with pytest.raises(ValueError, match="rewards lack completion ids"):
        select_pairs([[1, 2]], strategy="uncertain", per_prompt=1, rewards={1: 0.0})
    with pytest.raises(ValueError, match="rewards are required"):
        select_pairs([[1, 2]], strategy="uncertain", per_prompt=1)
    with pytest.raises(ValueError, match="strategy must be one of"):
        select_pairs([[1, 2]], strategy="best")


@pytest.mark.parametrize(
    "config",
    [
        SamplerParams(temperature=0.7, top_p=0.9, max_new_tokens=32, seed=4),
        DemoPolicyConfig(steps=10),
        DPOConfig(beta=0.2),
        PPOConfig(sampler=SamplerParams(temperature=0.8), adaptive_kl=True),
        BestOfNConfig(n=8, sampler=SamplerParams(seed=9)),
    ],
)
def test_configs_round_trip_through_their_dict(config):
    import json

    data = json.loads(json.dumps(config.as_dict()))
    assert type(config).from_dict(data) == config


def test_configs_reject_unknown_options_and_bad_values():
    with pytest.raises(ValueError, match="unknown PPOConfig options"):
        PPOConfig.from_dict({"klcoef": 0.1})
    with pytest.raises(ValueError, match="top_p"):
        SamplerParams(top_p=0)
    with pytest.raises(ValueError, match="loss_type"):
        DPOConfig(loss_type="nope")
    with pytest.raises(ValueError, match="n must be at least 2"):
        BestOfNConfig(n=1)
    with pytest.raises(ValueError, match="temperature must be > 0 for PPO"):
        PPOConfig(sampler=SamplerParams(temperature=0))
