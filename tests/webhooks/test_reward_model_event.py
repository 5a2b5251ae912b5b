"""reward_model.ready from a real training run (tiny BERT, a few steps) through the job queue."""

from __future__ import annotations

import pytest

from prefloop.webhooks import services
from rewards.models import RewardModel
from tests.rewards.conftest import tiny_options, voted_project  # noqa: F401 (fixture)
from tests.webhooks.receiver import signature_ok

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_trained_version_is_announced_when_ready(voted_project, tiny_model_dir, receiver, settings, tmp_path):
    from rewards import services as reward_services

    settings.PREFLOOP_MODEL_ROOTS = [tiny_model_dir.parent]
    settings.PREFLOOP_REWARD_MODEL_DIR = tmp_path / "reward-models"
    project, researcher, _ = voted_project
    r = receiver()
    webhook = services.webhook_create(project=project, url=r.url(), events=["reward_model.ready", "job.succeeded"])
    version, job = reward_services.request_training(
        project=project, user=researcher, options=tiny_options(tiny_model_dir)
    )
    version.refresh_from_db()
    assert version.status == RewardModel.Status.READY  # the immediate backend ran the job at commit
    assert all(signature_ok(webhook.secret, g.body, g.headers["x-prefloop-signature"]) for g in r.received)
    by_event = {g.json["event"]: g.json["data"] for g in r.received}
    assert set(by_event) == {"reward_model.ready", "job.succeeded"}
    ready = by_event["reward_model.ready"]["reward_model"]
    assert (ready["id"], ready["version"], ready["job_id"]) == (version.pk, 1, job.pk)
    assert 0 <= ready["metrics"]["accuracy"] <= 1
    assert by_event["job.succeeded"]["job"]["kind"] == "train_reward_model"
