"""Leaderboard and quality pages of the dashboard: researchers only, numbers drawn, names escaped."""

from __future__ import annotations

import pytest

from annotate.models import User
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db
EVIL = "<script>window.__xss=1</script>"


@pytest.fixture
def voted(client):
    researcher = make_user(role=User.Role.RESEARCHER)
    annotators = [make_user() for _ in range(2)]
    project = make_project(annotators=annotators, researchers=[researcher], overlap_target=2)
    make_comparisons(project, 4, models=("good-model", EVIL))
    for annotator in annotators:
        while assignment := next_comparison(annotator=annotator, project=project).assignment:
            record_vote(
                annotator=annotator,
                assignment_id=assignment.pk,
                idempotency_key=f"k{assignment.pk}",
                votes=[VoteInput(aspect="overall", choice="a")],
                time_spent_ms=4000,
            )
    return project, researcher, annotators[0]


def test_leaderboard_page_draws_ratings_and_escapes_model_names(client, voted):
    project, researcher, _ = voted
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/leaderboard/").content.decode()
    assert "<svg" in page and "good-model" in page
    assert EVIL not in page and "&lt;script&gt;" in page


def test_quality_page_shows_agreement_per_aspect(client, voted):
    project, researcher, _ = voted
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/quality/").content.decode()
    assert "Krippendorff" in page and "overall" in page


@pytest.mark.parametrize("path", ["leaderboard", "quality"])
def test_annotators_cannot_open_analysis_pages(client, voted, path):
    project, _, annotator = voted
    client.force_login(annotator)
    assert client.get(f"/projects/{project.pk}/{path}/").status_code == 404
