"""Bounded retraining: a fixed held-out split per project, the new round's pairs plus a replay sample, warm start."""

from __future__ import annotations

import pytest

from annotate.models import Comparison
from rewards import services
from rewards.errors import InvalidTrainingOptions
from rewards.models import RewardSettings
from tests.rewards.conftest import tiny_options

pytestmark = pytest.mark.django_db


def train(project, tiny_model_dir, **options):
    queued, _ = services.request_training(
        project=project, options=tiny_options(tiny_model_dir, **options), enqueue=False
    )
    ready = services.run_training(reward_model_id=queued.pk)
    services.mark_current(reward_model=ready)
    return ready


@pytest.mark.slow
def test_the_held_out_split_is_fixed_by_the_first_version_and_shared_by_later_ones(
    voted_project, tiny_model_dir, model_dir
):
    project, _, _ = voted_project
    first = train(project, tiny_model_dir, eval_fraction=0.25)
    fixed = RewardSettings.objects.get(project=project).held_out_split
    assert fixed == {
        "method": services.HELD_OUT_METHOD,
        "salt": f"project-{project.pk}",
        "fraction": 0.25,
        "fixed_by_version": 1,
    }
    second = train(project, tiny_model_dir, eval_fraction=0.5)  # asks for another split: the project's wins
    for version in (first, second):
        split = version.data_snapshot["split"]
        assert split["fraction"] == 0.25 and split["salt"] == fixed["salt"]
        assert split["held_out"] == version.metrics["pairs"] > 0
    assert second.data_snapshot["split"]["requested_eval_fraction"] == 0.5
    assert first.data_snapshot["split"]["held_out"] == second.data_snapshot["split"]["held_out"]
    from rewards.ml.metrics import wilson_interval

    pairs = first.metrics["pairs"]  # stored with the version: the interval over its held-out pairs
    assert first.metrics["accuracy_ci"] == pytest.approx(
        list(wilson_interval(first.metrics["accuracy"] * pairs, pairs))
    )
    assert first.data_snapshot["sha256"] == second.data_snapshot["sha256"]  # the same pairs on the same sides


@pytest.mark.slow
def test_a_bounded_version_trains_on_the_new_round_plus_a_replay_sample_from_the_previous_weights(
    voted_project, tiny_model_dir, model_dir
):
    project, _, _ = voted_project
    first = train(project, tiny_model_dir)
    newest = Comparison.objects.filter(project=project).order_by("id")[30:]
    Comparison.objects.filter(pk__in=[c.pk for c in newest]).update(round=1)
    # lr ≈ 0: a warm-started model keeps the previous version's scores; one from the base model would not.
    bounded = train(project, tiny_model_dir, rounds=[1], replay_pairs=5, warm_start=True, lr=1e-12, max_steps=1)
    selection = bounded.data_snapshot["selection"]
    split = bounded.data_snapshot["split"]
    assert selection["rounds"] == [1] and selection["replay_pairs"] == 5
    assert selection["older_pairs_available"] > 5
    assert split["train"] == selection["new_pairs"] + 5 <= 10 + 5
    # Held out: the project's fixed set over every round, the same as the first version's.
    assert split["held_out"] == first.data_snapshot["split"]["held_out"]
    assert bounded.data_snapshot["warm_start"] == {"from": "v1", "reward_model_id": first.pk}
    assert bounded.metrics["loss"] == pytest.approx(first.metrics["loss"], abs=1e-5)
    cold = train(project, tiny_model_dir, rounds=[1], replay_pairs=5, lr=1e-12, max_steps=1)
    assert cold.data_snapshot["warm_start"] is None
    assert abs(cold.metrics["loss"] - first.metrics["loss"]) > 1e-4


@pytest.mark.slow
def test_a_warm_start_without_a_previous_version_says_it_started_from_the_base_model(
    voted_project, tiny_model_dir, model_dir
):
    project, _, _ = voted_project
    ready = train(project, tiny_model_dir, rounds=[0], replay_pairs=0, warm_start=True)
    assert ready.data_snapshot["warm_start"]["from"] is None
    assert "no ready previous version" in ready.data_snapshot["warm_start"]["note"]


@pytest.mark.parametrize(
    "options,message",
    [
        ({"replay_pairs": 10}, "replay_pairs needs rounds"),
        ({"rounds": [1], "replay_pairs": -1}, "replay_pairs must be an integer between 0 and 50000"),
        ({"rounds": [1], "replay_pairs": 10**9}, "replay_pairs must be an integer between 0 and 50000"),
        ({"rounds": [1], "max_new_pairs": "many"}, "max_new_pairs must be an integer"),
        ({"warm_start": "yes"}, "warm_start must be true or false"),
    ],
)
def test_bad_bounded_options_name_the_field(voted_project, options, message):
    project, _, _ = voted_project
    with pytest.raises(InvalidTrainingOptions, match=message):
        services.request_training(project=project, options=options, enqueue=False)
