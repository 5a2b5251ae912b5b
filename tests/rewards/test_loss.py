"""The Bradley-Terry loss, its margin and the tie term, against hand computations."""

import math

import pytest
import torch

from rewards.ml.loss import preference_loss, tie_loss


def bradley_terry_loss(chosen, rejected, margin=None):
    """The preference term alone: preference_loss without ties."""
    return preference_loss(chosen, rejected, margin=margin)


def log_sigmoid(x: float) -> float:
    return -math.log(1 + math.exp(-x))


def test_bt_loss_is_the_mean_negative_log_sigmoid_of_the_reward_gap():
    chosen, rejected = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, 1.5, -1.0])
    expected = -(log_sigmoid(1.0) + log_sigmoid(-1.0) + log_sigmoid(0.0)) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)


def test_equal_rewards_cost_log_two():
    assert bradley_terry_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(math.log(2), rel=1e-6)


def test_a_margin_is_subtracted_from_the_gap():
    chosen, rejected, margin = (torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.5, 1.0]))
    expected = -(log_sigmoid(1.0 - 0.5) + log_sigmoid(0.0 - 1.0)) / 2
    assert bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(chosen, rejected, margin) > bradley_terry_loss(chosen, rejected)


def test_the_tie_term_is_smallest_when_scores_are_equal_and_symmetric():
    gap = torch.tensor([1.5])
    expected = -0.5 * (log_sigmoid(1.5) + log_sigmoid(-1.5))
    assert tie_loss(gap, torch.zeros(1)).item() == pytest.approx(expected, rel=1e-6)
    assert tie_loss(torch.zeros(1), gap).item() == pytest.approx(expected, rel=1e-6)
    assert tie_loss(torch.zeros(1), torch.zeros(1)).item() == pytest.approx(math.log(2), rel=1e-6)
    assert tie_loss(gap, torch.zeros(1)) > tie_loss(torch.zeros(1), torch.zeros(1))


def test_the_tie_term_equals_bt_over_both_orders():
    a, b = torch.tensor([0.3, -2.0]), torch.tensor([1.1, 0.4])
    both_orders = (bradley_terry_loss(a, b) + bradley_terry_loss(b, a)) / 2
    assert tie_loss(a, b).item() == pytest.approx(both_orders.item(), rel=1e-6)


def test_preference_loss_mixes_preferences_and_ties_per_pair():
    chosen, rejected = torch.tensor([2.0, 1.0]), torch.tensor([0.0, 0.0])
    tie, margin = torch.tensor([False, True]), torch.tensor([0.5, 0.9])
    expected = (-log_sigmoid(2.0 - 0.5) - 0.5 * (log_sigmoid(1.0) + log_sigmoid(-1.0))) / 2
    assert preference_loss(chosen, rejected, margin=margin, tie=tie).item() == pytest.approx(expected, rel=1e-6)


def test_gradients_push_chosen_up_and_rejected_down():
    chosen, rejected = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
