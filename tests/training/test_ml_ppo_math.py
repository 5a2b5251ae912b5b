"""The pure pieces of PPO: GAE, the clipped surrogate, the value loss, per-token KL rewards, the β controller."""

from __future__ import annotations

import math

import pytest
import torch

from training.ml.ppo import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    gae,
    kl_penalized_rewards,
    masked_whiten,
    value_loss,
)


def test_gae_matches_a_hand_computation_and_stops_at_each_response_end():
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.1], [0.3, 9.0, 9.0]])  # the 9s sit on padding and must not leak in
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=gamma, lam=lam)
    # row 0: δ2 = 1 − 0.1 = 0.9; δ1 = 0 + 0.9·0.1 − 0.2 = −0.11; δ0 = 0 + 0.9·0.2 − 0.5 = −0.32
    a2 = 0.9
    a1 = -0.11 + gamma * lam * a2
    a0 = -0.32 + gamma * lam * a1
    # row 1: one token, terminal: A = 2 − 0.3
    assert advantages.tolist()[0] == pytest.approx([a0, a1, a2])
    assert advantages.tolist()[1] == pytest.approx([1.7, 0.0, 0.0])
    assert returns.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.1])
    assert returns.tolist()[1] == pytest.approx([2.0, 0.0, 0.0])


def test_gae_with_lambda_one_and_zero_values_is_the_discounted_return():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    advantages, _ = gae(rewards, torch.zeros(1, 3), torch.ones(1, 3), gamma=0.5, lam=1.0)
    assert advantages.tolist()[0] == pytest.approx([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])


def test_clipped_loss_stops_pushing_beyond_the_clip_range():
    old = torch.zeros(1, 2)
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2)
    # ratio 1.5 on a positive advantage is clipped to 1.2; ratio 0.5 on a negative one to 0.8
    logp = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_()
    loss, clipfrac = clipped_policy_loss(logp, old, adv, mask, 0.2)
    assert loss.item() == pytest.approx(-(1.2 * 1.0 + 0.8 * -1.0) / 2)
    assert clipfrac.item() == pytest.approx(1.0)
    loss.backward()
    assert logp.grad.abs().sum().item() == 0.0  # both clipped: no gradient
    # inside the range the loss is −ρA and has a gradient
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, clipfrac = clipped_policy_loss(logp, old, adv, mask, 0.2)
    loss.backward()
    assert loss.item() == pytest.approx(0.0) and clipfrac.item() == 0.0
    assert logp.grad.tolist()[0] == pytest.approx([-0.5, 0.5])


def test_padding_does_not_count_in_the_clipped_loss():
    logp, old = torch.zeros(1, 3), torch.zeros(1, 3)
    adv = torch.tensor([[1.0, 1.0, 100.0]])
    loss, _ = clipped_policy_loss(logp, old, adv, torch.tensor([[1.0, 1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(-1.0)


def test_value_loss_clipping_takes_the_worse_of_clipped_and_unclipped():
    old, returns, mask = torch.zeros(1, 1), torch.tensor([[1.0]]), torch.ones(1, 1)
    values = torch.tensor([[0.9]])
    assert value_loss(values, old, returns, mask, None).item() == pytest.approx(0.5 * 0.01)
    # clipped to 0.2: (0.2 − 1)² = 0.64 > 0.01
    assert value_loss(values, old, returns, mask, 0.2).item() == pytest.approx(0.5 * 0.64)


def test_kl_penalty_is_per_token_and_the_score_lands_on_the_last_real_token():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -2.0, 0.0]])
    ref = torch.tensor([[-2.0, -1.0, -1.5], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([5.0, 7.0]), logp, ref, mask, 0.1)
    assert kl.flatten().tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0, -1.0, 0.0])
    assert rewards.flatten().tolist() == pytest.approx([-0.1, 0.0, 5.0 - 0.05, 0.0, 7.0 + 0.1, 0.0])


def test_adaptive_controller_raises_beta_above_target_and_lowers_it_below():
    high = AdaptiveKLController(0.1, target=6.0, horizon=100)
    high.update(12.0, n_steps=10)  # error clipped to +0.2
    assert high.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    low = AdaptiveKLController(0.1, target=6.0, horizon=100)
    low.update(3.0, n_steps=10)  # error −0.5 clipped to −0.2
    assert low.value == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
    near = AdaptiveKLController(0.1, target=6.0, horizon=100)
    near.update(6.6, n_steps=100)  # error +0.1
    assert near.value == pytest.approx(0.11)
    fixed = FixedKLController(0.1)
    fixed.update(100.0, n_steps=100)
    assert fixed.value == 0.1


def test_whitening_uses_only_masked_entries():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w = masked_whiten(x, mask)
    assert w.tolist()[0] == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)
    assert not math.isnan(w.sum().item())


def test_a_ppo_config_with_nucleus_sampling_is_refused_with_the_reason():
    from training.ml.config import PPOConfig, SamplerParams

    with pytest.raises(ValueError, match=r"sampler.top_p must be 1 for PPO \(got 0.95\).*full distribution"):
        PPOConfig(sampler=SamplerParams(top_p=0.95))
    assert PPOConfig.from_dict({"sampler": {"temperature": 0.8}}).sampler.top_p == 1.0


def test_ppo_rollouts_sample_the_full_distribution_whatever_the_rounds_top_p():
    from training.params import RoundParams
    from training.services import rollout_sampler

    params = RoundParams(top_p=0.9, temperature=0.8)
    assert rollout_sampler("ppo", params, 2) == {**params.sampler(seed_offset=2), "top_p": 1.0}
    assert rollout_sampler("best_of_n", params, 2)["top_p"] == 0.9  # ranks samples only: keeps the round's sampler
