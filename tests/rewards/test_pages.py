"""The reward-models page: versions with inline SVG curves, a metrics diff, retrain (researchers only)."""

from __future__ import annotations

import pytest

from rewards.charts import Series, line_chart
from rewards.models import RewardModel

pytestmark = pytest.mark.django_db


def version(project, number, **fields):
    defaults = dict(
        base_model="tiny",
        status=RewardModel.Status.READY,
        artifact_path=f"/x/v{number}",
        metrics={
            "accuracy": 0.6 + number / 100,
            "loss": 0.68,
            "ece": 0.05,
            "accuracy_by_category": {"<b>cat</b>": {"pairs": 3, "accuracy": 0.5}},
        },
        curves={
            "train": [{"step": s, "loss": 0.7 - s / 100, "accuracy": 0.5} for s in range(1, 6)],
            "eval": [{"step": 5, "loss": 0.66, "accuracy": 0.6, "ece": 0.05}],
        },
    )
    return RewardModel.objects.create(project=project, version=number, **{**defaults, **fields})


def test_researchers_see_versions_with_svg_curves_and_a_diff(client, voted_project):
    project, researcher, _ = voted_project
    version(project, 1)
    version(project, 2)
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/reward-models/?a=1&b=2")
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count("<svg") == 4 and "<polyline" in html
    assert "B − A" in html and "0.0100" in html  # accuracy diff of v2 over v1
    assert "&lt;b&gt;cat&lt;/b&gt;" in html and "<b>cat</b>" not in html
    assert "csrfmiddlewaretoken" in html


def test_annotators_get_404_and_cannot_retrain(client, voted_project):
    project, _, annotator = voted_project
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/reward-models/").status_code == 404
    assert client.post(f"/projects/{project.pk}/reward-models/retrain/").status_code == 404
    assert not RewardModel.objects.exists()


def test_the_retrain_button_queues_a_version(client, voted_project, model_dir):
    project, researcher, _ = voted_project
    client.force_login(researcher)
    response = client.post(f"/projects/{project.pk}/reward-models/retrain/")
    assert response.status_code == 302
    queued = RewardModel.objects.get()
    assert queued.status == RewardModel.Status.QUEUED and queued.job_id and queued.created_by == researcher


def test_chart_labels_are_escaped():
    svg = line_chart([Series("<script>alert(1)</script>", [(0, 1.0), (1, 2.0)])], title='"><img src=x>')
    assert "<script>" not in svg and "<img" not in svg and "&lt;script&gt;" in svg


def test_the_page_shows_each_versions_interval_and_held_out_size(client, voted_project):
    from rewards.ml.metrics import wilson_interval

    project, researcher, _ = voted_project
    version(project, 1, metrics={"accuracy": 0.575, "pairs": 40, "accuracy_ci": list(wilson_interval(23, 40))})
    client.force_login(researcher)
    html = client.get(f"/projects/{project.pk}/reward-models/").content.decode()
    assert "held-out acc. [95 % CI]" in html and '<span class="ci chance">[0.422, 0.715]</span>' in html
    assert '<td class="num">40</td>' in html
