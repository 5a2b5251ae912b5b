"""Version lifecycle: queued → training → ready only with a complete artifact; failed on any exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from rewards import services
from rewards.errors import InvalidTrainingOptions, RewardModelNotReady
from rewards.models import RewardModel
from tests.rewards.conftest import tiny_options

pytestmark = pytest.mark.django_db


def test_a_request_creates_the_next_queued_version_with_its_data_filters(voted_project, tiny_model_dir, model_dir):
    project, researcher, _ = voted_project
    first, _ = services.request_training(
        project=project, user=researcher, options=tiny_options(tiny_model_dir, rounds=[0]), enqueue=False
    )
    second, _ = services.request_training(project=project, options=tiny_options(tiny_model_dir), enqueue=False)
    assert (first.version, second.version) == (1, 2)
    assert first.status == RewardModel.Status.QUEUED
    assert first.options["max_length"] == 64 and first.options["ties"] == "drop"
    assert first.data_snapshot["filters"]["rounds"] == [0] and "until" in first.data_snapshot["filters"]


def test_unknown_options_are_refused(voted_project):
    project, _, _ = voted_project
    with pytest.raises(InvalidTrainingOptions, match="learning_rate"):
        services.request_training(project=project, options={"learning_rate": 1}, enqueue=False)
    with pytest.raises(InvalidTrainingOptions, match="ties"):
        services.request_training(project=project, options={"ties": "coin-flip"}, enqueue=False)


@pytest.mark.slow
def test_a_finished_run_is_ready_with_metrics_curves_snapshot_and_artifact(voted_project, tiny_model_dir, model_dir):
    project, _, _ = voted_project
    queued, _ = services.request_training(project=project, options=tiny_options(tiny_model_dir), enqueue=False)
    ready = services.run_training(reward_model_id=queued.pk)
    assert ready.status == RewardModel.Status.READY and ready.finished_at
    assert Path(ready.artifact_path, "model.safetensors").is_file()
    assert Path(ready.artifact_path).parent.parent == model_dir
    assert 0 <= ready.metrics["accuracy"] <= 1 and ready.metrics["steps"] == 4
    assert len(ready.curves["train"]) == 4
    snapshot = ready.data_snapshot
    assert snapshot["pairs"] == 40 and len(snapshot["pair_ids"]) == 40 and len(snapshot["sha256"]) == 64
    assert snapshot["split"]["train"] + snapshot["split"]["held_out"] == 40


@pytest.mark.slow
def test_a_crash_while_saving_leaves_the_version_failed_and_no_artifact(
    voted_project, tiny_model_dir, model_dir, monkeypatch
):
    import rewards.ml.artifact as artifact

    project, _, _ = voted_project
    queued, _ = services.request_training(project=project, options=tiny_options(tiny_model_dir), enqueue=False)

    def crash(path, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifact.os, "replace", crash)  # dies after writing, before the rename
    with pytest.raises(OSError, match="disk full"):
        services.run_training(reward_model_id=queued.pk)
    queued.refresh_from_db()
    assert queued.status == RewardModel.Status.FAILED and "disk full" in queued.error
    assert queued.artifact_path == ""
    assert not model_dir.exists() or not any(model_dir.rglob("*.safetensors"))


def test_an_exception_in_the_engine_fails_the_version(voted_project, tiny_model_dir, model_dir):
    project, _, _ = voted_project
    missing = tiny_model_dir.parent / "no-such-model"  # inside the allowed roots, but not there
    queued, _ = services.request_training(project=project, options=tiny_options(missing), enqueue=False)
    with pytest.raises(Exception):  # noqa: B017  (whatever the engine raises: the version's state is the point)
        services.run_training(reward_model_id=queued.pk)
    queued.refresh_from_db()
    assert queued.status == RewardModel.Status.FAILED and queued.error


def test_no_matching_votes_fail_with_a_clear_error(voted_project, tiny_model_dir, model_dir):
    project, _, _ = voted_project
    queued, _ = services.request_training(
        project=project, options=tiny_options(tiny_model_dir, rounds=[7]), enqueue=False
    )
    with pytest.raises(Exception, match="no preference pairs"):
        services.run_training(reward_model_id=queued.pk)
    queued.refresh_from_db()
    assert queued.status == RewardModel.Status.FAILED


def _ready_version(project, version: int) -> RewardModel:
    return RewardModel.objects.create(
        project=project,
        version=version,
        base_model="tiny",
        status=RewardModel.Status.READY,
        artifact_path=f"/x/v{version}",
    )


def test_only_one_version_per_project_is_current(voted_project):
    project, _, _ = voted_project
    one, two = _ready_version(project, 1), _ready_version(project, 2)
    services.mark_current(reward_model=one)
    services.mark_current(reward_model=two)
    assert list(RewardModel.objects.filter(is_current=True)) == [two]
    with pytest.raises(IntegrityError), transaction.atomic():
        RewardModel.objects.filter(pk=one.pk).update(is_current=True)  # the database refuses a second


def test_a_version_that_is_not_ready_cannot_be_current(voted_project):
    project, _, _ = voted_project
    queued = RewardModel.objects.create(project=project, version=1, base_model="tiny")
    with pytest.raises(RewardModelNotReady):
        services.mark_current(reward_model=queued)
    with pytest.raises(IntegrityError), transaction.atomic():
        RewardModel.objects.filter(pk=queued.pk).update(is_current=True)


def test_ready_without_an_artifact_is_refused_by_the_database(voted_project):
    project, _, _ = voted_project
    with pytest.raises(IntegrityError), transaction.atomic():
        RewardModel.objects.create(project=project, version=1, base_model="tiny", status=RewardModel.Status.READY)


def test_the_next_version_names_the_current_one_as_parent(voted_project, tiny_model_dir):
    project, _, _ = voted_project
    services.mark_current(reward_model=_ready_version(project, 1))
    child, _ = services.request_training(project=project, options=tiny_options(tiny_model_dir), enqueue=False)
    assert child.parent.version == 1 and child.version == 2
