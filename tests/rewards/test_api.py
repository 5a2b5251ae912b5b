"""The rewards REST API: researchers only (everyone else 404), training requests, scoring."""

from __future__ import annotations

import pytest

from annotate.models import Completion, User
from rewards.models import RewardModel
from rewards.services import MAX_SCORE_ITEMS
from tests.factories import make_user
from tests.rewards.conftest import tiny_options

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_version(voted_project, tiny_model_dir, tmp_path):
    """A ready version whose artifact is the tiny model (no training needed for API tests)."""
    from rewards.ml.artifact import save_artifact
    from rewards.ml.backbone import load_base
    from rewards.ml.config import RewardTrainConfig

    project, _, _ = voted_project
    model, tokenizer = load_base(RewardTrainConfig(base_model=str(tiny_model_dir)))
    folder = save_artifact(model, tokenizer, tmp_path / "v1", meta={"max_length": 64})
    return RewardModel.objects.create(
        project=project,
        version=1,
        base_model=str(tiny_model_dir),
        status=RewardModel.Status.READY,
        artifact_path=str(folder),
        metrics={"accuracy": 0.75},
        curves={"train": [{"step": 1, "loss": 0.7}]},
    )


def urls(version: RewardModel) -> list[tuple[str, str]]:
    p, v = version.project_id, version.pk
    return [
        ("get", f"/api/projects/{p}/reward-models/"),
        ("post", f"/api/projects/{p}/reward-models/"),
        ("get", f"/api/projects/{p}/reward-settings/"),
        ("get", f"/api/reward-models/{v}/"),
        ("post", f"/api/reward-models/{v}/make-current/"),
        ("post", f"/api/reward-models/{v}/score/"),
    ]


def test_annotators_and_strangers_get_404_everywhere(api, voted_project, ready_version):
    _, _, annotator = voted_project
    stranger = make_user("stranger", role=User.Role.RESEARCHER)
    for user in (annotator, stranger):
        client = api(user)
        for method, url in urls(ready_version):
            response = getattr(client, method)(url, {"items": [{"prompt": "x", "response": "y"}]}, format="json")
            assert response.status_code == 404, (user.username, method, url, response.content)
    assert RewardModel.objects.count() == 1


def test_anonymous_requests_are_refused(api, ready_version):
    assert api().get(f"/api/reward-models/{ready_version.pk}/").status_code == 401


def test_post_queues_a_training_job_and_returns_the_pending_version(api, voted_project, tiny_model_dir, model_dir):
    from prefloop.jobs.models import Job

    project, researcher, _ = voted_project
    response = api(researcher).post(
        f"/api/projects/{project.pk}/reward-models/",
        {"options": tiny_options(tiny_model_dir, ties="equal")},
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get(pk=body["job_id"])
    assert job.kind == "train_reward_model" and job.params == {"reward_model_id": body["reward_model"]["id"]}
    assert body["reward_model"]["status"] == "queued" and body["reward_model"]["job_id"] == job.pk
    assert body["reward_model"]["options"]["ties"] == "equal"


def test_bad_options_are_a_400(api, voted_project):
    project, researcher, _ = voted_project
    response = api(researcher).post(
        f"/api/projects/{project.pk}/reward-models/", {"options": {"lr": -1}}, format="json"
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_training_options"


def test_list_and_detail_show_metrics_and_curves(api, voted_project, ready_version):
    project, researcher, _ = voted_project
    listed = api(researcher).get(f"/api/projects/{project.pk}/reward-models/").json()
    assert [v["version"] for v in listed] == [1] and listed[0]["metrics"]["accuracy"] == 0.75
    detail = api(researcher).get(f"/api/reward-models/{ready_version.pk}/").json()
    assert detail["curves"]["train"][0]["loss"] == 0.7


def test_make_current(api, voted_project, ready_version):
    _, researcher, _ = voted_project
    response = api(researcher).post(f"/api/reward-models/{ready_version.pk}/make-current/")
    assert response.status_code == 200 and response.json()["is_current"] is True


def test_scoring_items_returns_one_float_per_item(api, voted_project, ready_version):
    _, researcher, _ = voted_project
    items = [{"prompt": f"question {i}", "response": "great helpful " * i} for i in range(5)]
    response = api(researcher).post(f"/api/reward-models/{ready_version.pk}/score/", {"items": items}, format="json")
    assert response.status_code == 200, response.content
    scores = response.json()["scores"]
    assert len(scores) == 5 and all(isinstance(s, float) for s in scores)


def test_scoring_completion_ids_keeps_their_order(api, voted_project, ready_version):
    project, researcher, _ = voted_project
    ids = list(Completion.objects.filter(prompt__project=project).order_by("id").values_list("id", flat=True)[:6])
    client = api(researcher)
    forward = client.post(
        f"/api/reward-models/{ready_version.pk}/score/", {"completion_ids": ids}, format="json"
    ).json()["scores"]
    backward = client.post(
        f"/api/reward-models/{ready_version.pk}/score/", {"completion_ids": ids[::-1]}, format="json"
    ).json()["scores"]
    assert len(forward) == 6 and forward == pytest.approx(backward[::-1], abs=1e-5)


def test_scoring_refuses_other_projects_completions_and_oversized_batches(api, voted_project, ready_version):
    from tests.factories import make_comparisons, make_project

    _, researcher, _ = voted_project
    other = make_comparisons(make_project(name="other"), 1)[0]
    foreign = list(other.items.values_list("completion_id", flat=True))
    client = api(researcher)
    url = f"/api/reward-models/{ready_version.pk}/score/"
    assert client.post(url, {"completion_ids": foreign}, format="json").status_code == 404
    too_many = [{"prompt": "p", "response": "r"}] * (MAX_SCORE_ITEMS + 1)
    assert client.post(url, {"items": too_many}, format="json").status_code == 400
    assert client.post(url, {}, format="json").status_code == 400


def test_a_version_that_is_not_ready_does_not_score(api, voted_project):
    project, researcher, _ = voted_project
    queued = RewardModel.objects.create(project=project, version=1, base_model="tiny")
    response = api(researcher).post(
        f"/api/reward-models/{queued.pk}/score/", {"items": [{"prompt": "p", "response": "r"}]}, format="json"
    )
    assert response.status_code == 409


def test_settings_toggle_auto_retrain(api, voted_project):
    project, researcher, _ = voted_project
    response = api(researcher).patch(
        f"/api/projects/{project.pk}/reward-settings/", {"auto_retrain": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["auto_retrain"] is True


def test_every_version_reports_its_held_out_accuracy_with_a_wilson_interval_and_size(api, voted_project, ready_version):
    from rewards.ml.metrics import wilson_interval

    project, researcher, _ = voted_project
    RewardModel.objects.filter(pk=ready_version.pk).update(metrics={"accuracy": 0.75, "pairs": 40})  # stored before h4
    listed = api(researcher).get(f"/api/projects/{project.pk}/reward-models/").json()
    held_out = listed[0]["held_out"]
    assert held_out["accuracy"] == 0.75 and held_out["pairs"] == 40 and held_out["interval"] == "wilson-95"
    assert held_out["accuracy_ci"] == pytest.approx(list(wilson_interval(30, 40))) and held_out["above_chance"] is True
    queued = RewardModel.objects.create(project=project, version=2, base_model="tiny")
    assert api(researcher).get(f"/api/reward-models/{queued.pk}/").json()["held_out"] is None
