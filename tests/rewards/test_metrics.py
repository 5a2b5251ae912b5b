"""Held-out metrics: accuracy, ECE of σ(Δr) over 10 bins, by category."""
import math

import pytest

from rewards.ml.metrics import expected_calibration_error, pairwise_accuracy, reward_metrics


def test_accuracy_counts_exact_ties_of_rewards_as_half():
    assert pairwise_accuracy([1.0, -1.0, 0.0, 2.0]) == pytest.approx(2.5 / 4)


def test_ece_by_hand():
    # Δ = logit(0.75) → p = 0.75 for the winner (bin 7) and 0.25 for the loser (bin 2): observed 1 and 0.
    delta = math.log(3)
    ece, bins = expected_calibration_error([delta, delta])
    assert ece == pytest.approx(0.25)
    assert bins[7]["n"] == 2 and bins[7]["observed"] == 1.0 and bins[2]["observed"] == 0.0


def test_a_model_right_as_often_as_it_says_is_calibrated():
    delta = math.log(3)  # claims 75 %
    ece, _ = expected_calibration_error([delta, delta, delta, -delta])  # right 3 times of 4
    assert ece == pytest.approx(0.0, abs=1e-9)


def test_reward_metrics_split_by_category_and_leave_ties_out_of_accuracy():
    metrics = reward_metrics([1.0, 0.0, 2.0, 0.5], [0.0, 1.0, 1.0, 0.5], ties=[False, False, False, True],
                             categories=["x", "x", "y", "y"])
    assert metrics["pairs"] == 3 and metrics["tie_pairs"] == 1
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["accuracy_by_category"] == {"x": {"pairs": 2, "accuracy": 0.5}, "y": {"pairs": 1, "accuracy": 1.0}}
    assert metrics["reward_mean"] == pytest.approx(0.75)
