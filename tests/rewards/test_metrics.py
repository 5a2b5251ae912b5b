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
    metrics = reward_metrics(
        [1.0, 0.0, 2.0, 0.5], [0.0, 1.0, 1.0, 0.5], ties=[False, False, False, True], categories=["x", "x", "y", "y"]
    )
    assert metrics["pairs"] == 3 and metrics["tie_pairs"] == 1
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["accuracy_by_category"] == {"x": {"pairs": 2, "accuracy": 0.5}, "y": {"pairs": 1, "accuracy": 1.0}}
    assert metrics["reward_mean"] == pytest.approx(0.75)


def test_wilson_interval_matches_a_hand_computation():
    from rewards.ml.metrics import wilson_interval

    # 23 of 40: p̂ = 0.575, z = 1.96: centre = (0.575 + 1.96²/80) / (1 + 1.96²/40),
    # half = 1.96 √(0.575·0.425/40 + 1.96²/6400) / (1 + 1.96²/40)
    z = 1.959963984540054
    centre = (0.575 + z * z / 80) / (1 + z * z / 40)
    half = z * math.sqrt(0.575 * 0.425 / 40 + z * z / 6400) / (1 + z * z / 40)
    low, high = wilson_interval(23, 40)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (low, high) == pytest.approx((0.4220, 0.7149), abs=1e-4)  # the 0.575 on 40 pairs includes ½


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (7, 10), (10, 10), (17, 34), (380, 400), (1, 1000)])
def test_wilson_interval_agrees_with_scipy(k, n):
    from scipy.stats import binomtest

    from rewards.ml.metrics import wilson_interval

    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((reference.low, reference.high), abs=1e-9)


def test_wilson_interval_of_nothing_is_everything_and_bad_counts_are_refused():
    from rewards.ml.metrics import wilson_interval

    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)


def test_reward_metrics_report_the_interval_over_the_held_out_pairs():
    metrics = reward_metrics([1.0] * 30 + [0.0] * 10, [0.0] * 30 + [1.0] * 10)
    assert metrics["pairs"] == 40 and metrics["accuracy"] == 0.75
    from rewards.ml.metrics import wilson_interval

    assert metrics["accuracy_ci"] == list(wilson_interval(30, 40)) and metrics["accuracy_ci_method"] == "wilson-95"
    assert metrics["accuracy_ci"][0] > 0.5
