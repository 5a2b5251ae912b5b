"""A ready reward model whose folder is gone answers 409 reward_model_not_ready, not a 500 (found by schemathesis)."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.security.test_schemathesis import build_world

pytestmark = pytest.mark.django_db(transaction=True)


def test_scoring_a_ready_version_without_its_files_is_a_409(settings, tmp_path):
    settings.PREFLOOP_JOB_BACKEND = "db"
    settings.PREFLOOP_REWARD_MODEL_DIR = tmp_path / "reward-models"  # empty: the version's folder is missing
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path / "models"]
    world = build_world()
    assert world.reward_model_a.status == "ready"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.get_or_create(user=world.researcher_a)[0].key)
    answer = client.post(
        f"/api/reward-models/{world.reward_model_a.pk}/score/",
        {"items": [{"prompt": "\t", "response": "a"}]},
        format="json",
    )
    assert answer.status_code == 409, answer.content
    assert answer.json()["error"] == "reward_model_not_ready"
    assert "files are missing" in answer.json()["detail"]
