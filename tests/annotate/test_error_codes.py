"""Each bad input answers an error code naming what was invalid (issue 17), with the field, as a 400."""

from __future__ import annotations

import io

import pytest

from annotate.models import Comparison, Membership, Project, User
from annotate.services.projects import comparison_set_gold, project_create
from prefloop.core.errors import InvalidSetting, InvalidVote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def researcher_and_project():
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    return researcher, project


def test_an_unknown_user_name_is_invalid_username(api):
    researcher, project = researcher_and_project()
    response = api(researcher).post(f"/api/projects/{project.pk}/members/", {"username": "ghost"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_username" and response.json()["field"] == "username"
    assert not Membership.objects.filter(project=project, user__username="ghost").exists()


def test_an_oversized_upload_is_invalid_upload_not_invalid_vote(api, settings):
    settings.PREFLOOP_MAX_UPLOAD_BYTES = 1024
    researcher, project = researcher_and_project()
    upload = io.BytesIO(b'{"prompt": "p"}\n' * 200)
    upload.name = "big.jsonl"
    response = api(researcher).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_upload" and response.json()["field"] == "file"
    assert not Comparison.objects.filter(project=project).exists()


def test_project_settings_and_gold_labels_raise_invalid_setting():
    with pytest.raises(InvalidSetting) as caught:
        project_create(name="dupes", aspects=["a", "a"])
    assert caught.value.field == "aspects" and caught.value.code == "invalid_setting"
    assert not Project.objects.filter(name="dupes").exists()
    comparison = make_comparisons(make_project(), 1)[0]
    with pytest.raises(InvalidSetting) as gold:
        comparison_set_gold(comparison=comparison, label="maybe")
    assert gold.value.field == "label" and not isinstance(gold.value, InvalidVote)


def test_a_bad_vote_still_answers_invalid_vote(api):
    researcher, project = researcher_and_project()
    annotator = make_user("voter")
    Membership.objects.create(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    make_comparisons(project, 1)
    client = api(annotator)
    lease = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]
    response = client.post(
        f"/api/assignments/{lease['assignment_id']}/vote/", {"choice": "z", "idempotency_key": "k1"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_vote" and response.json()["field"].endswith("choice")
