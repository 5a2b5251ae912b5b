"""The dashboard's per-annotator figures and live fragment."""

from __future__ import annotations

import pytest

from annotate.models import User
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from frontend.live import dashboard_context, render_live_progress
from frontend.selectors import annotator_vote_stats
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def vote(annotator, project, ms, *, aspects=("overall",)):
    assignment = next_comparison(annotator=annotator, project=project).assignment
    record_vote(
        annotator=annotator,
        assignment_id=assignment.pk,
        votes=[VoteInput(aspect=a, choice="a") for a in aspects],
        idempotency_key=f"k-{assignment.pk}",
        time_spent_ms=ms,
    )


def test_stats_count_votes_and_take_the_median_time_per_annotator():
    fast, slow, idle = make_user("fast"), make_user("slow"), make_user("idle")
    project = make_project(annotators=[fast, slow, idle], overlap_target=3)
    make_comparisons(project, 3)
    for ms in (1000, 2000, 9000):
        vote(fast, project, ms)
    vote(slow, project, 30000)
    stats = {s.username: s for s in annotator_vote_stats(project)}
    assert (stats["fast"].votes, stats["fast"].today, stats["fast"].median_seconds) == (3, 3, 2.0)
    assert (stats["slow"].votes, stats["slow"].median_seconds) == (1, 30.0)
    assert (stats["idle"].votes, stats["idle"].median_seconds, stats["idle"].last_vote_at) == (0, None, None)
    assert [s.username for s in annotator_vote_stats(project)] == ["fast", "slow", "idle"]


def test_multi_aspect_submission_counts_once():
    annotator = make_user()
    project = make_project(annotators=[annotator], aspects=["helpful", "harmless"])
    make_comparisons(project, 1)
    vote(annotator, project, 4000, aspects=("helpful", "harmless"))
    [stats] = annotator_vote_stats(project)
    assert (stats.votes, stats.median_seconds) == (1, 4.0)


def test_live_fragment_shows_collected_of_wanted_and_no_model_names():
    annotator = make_user("ann")
    project = make_project(annotators=[annotator], overlap_target=2, researchers=[make_user(role=User.Role.RESEARCHER)])
    make_comparisons(project, 2, models=("hidden-a", "hidden-b"))
    vote(annotator, project, 1500)
    context = dashboard_context(project)
    assert (context["collected"], context["wanted"]) == (1, 4)
    html = render_live_progress(project)
    assert '<span id="votes-done">1</span>' in html and 'data-annotator="ann"' in html
    assert "1.5 s" in html
