"""The Quality tab's judge section: agreement figures, settings form, the judge button; researchers only."""

from __future__ import annotations

import pytest

from annotate.models import User
from judging.models import JudgeSettings
from tests.factories import make_comparisons, make_project, make_user
from tests.judging.helpers import human_vote, judge_verdict
from training.models import Policy

pytestmark = pytest.mark.django_db


def test_quality_tab_shows_judge_agreement_and_saves_settings(client):
    researcher, annotator = make_user(role=User.Role.RESEARCHER), make_user()
    project = make_project(researchers=[researcher], annotators=[annotator])
    policy = Policy.objects.create(
        project=project, version=1, method="base", status="ready", artifact_path="/nowhere", name="<b>j</b>"
    )
    (c,) = make_comparisons(project, 1)
    judge_verdict(c, policy, "first", "AB")
    human_vote(c, annotator, "first")
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/quality/").content.decode()
    assert "Judge–human agreement" in page and "1.000" in page and "(1/1)" in page
    assert "<b>j</b>" not in page and "&lt;b&gt;j&lt;/b&gt;" in page  # escaped
    response = client.post(
        f"/projects/{project.pk}/quality/judge/",
        {"judge": policy.pk, "principles-overall": "Be kind.", "batch_size": "4"},
    )
    assert response.status_code == 302
    settings = JudgeSettings.objects.get(project=project)
    assert settings.judge == policy and settings.principles == {"overall": "Be kind."} and settings.batch_size == 4
    client.post(f"/projects/{project.pk}/quality/judge/", {"judge": policy.pk, "batch_size": "0"})
    assert JudgeSettings.objects.get(project=project).batch_size == 4  # refused, left as it was
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/quality/").status_code == 404
    assert client.post(f"/projects/{project.pk}/quality/judge/", {"judge": ""}).status_code == 404
    assert client.post(f"/projects/{project.pk}/quality/judge/run/", {}).status_code == 404
    assert JudgeSettings.objects.get(project=project).judge == policy
