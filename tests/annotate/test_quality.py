"""Annotation quality on constructed cases with known answers, and gold checks in the queue."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from annotate.models import Assignment, Comparison, Membership, User
from annotate.quality.report import project_quality
from annotate.quality.stats import krippendorff_alpha, percent_agreement
from annotate.services.assignment import next_comparison
from annotate.services.importing import import_file
from annotate.services.projects import comparison_set_gold
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def vote(annotator, assignment, choice, ms=5000, strength=None):
    record_vote(
        annotator=annotator,
        assignment_id=assignment.pk,
        idempotency_key=f"q{assignment.pk}",
        time_spent_ms=ms,
        votes=[VoteInput(aspect="overall", choice=choice, strength=strength)],
    )


@pytest.mark.parametrize("level", ["nominal", "ordinal"])
def test_alpha_matches_the_krippendorff_package(level):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 4, size=(4, 60)).astype(float)
    data[:, :30] = data[0, :30]
    data[rng.random(data.shape) < 0.25] = np.nan
    units = {u: {c: int(data[c, u]) for c in range(4) if not np.isnan(data[c, u])} for u in range(60)}
    ours = krippendorff_alpha(units, level=level, order=[0, 1, 2, 3])
    reference = krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=[0, 1, 2, 3])
    assert ours == pytest.approx(reference, abs=1e-9)


def test_perfect_agreement_and_none_without_pairs():
    units = {1: {"x": "a", "y": "a"}, 2: {"x": "b", "y": "b"}}
    assert krippendorff_alpha(units) == 1.0
    assert percent_agreement(units) == 1.0
    assert krippendorff_alpha({1: {"x": "a"}}) is None


@pytest.fixture
def biased_project():
    """Four careful annotators agree on 30 comparisons; a fifth always presses 'left', fast."""
    careful = [make_user(f"careful{i}") for i in range(4)]
    lefty = make_user("lefty")
    project = make_project(annotators=careful + [lefty], overlap_target=5)
    comparisons = make_comparisons(project, 30)
    truth = {c.pk: list(c.items.values_list("completion_id", flat=True))[i % 2] for i, c in enumerate(comparisons)}
    for annotator in careful + [lefty]:
        while assignment := next_comparison(annotator=annotator, project=project).assignment:
            if annotator is lefty:
                vote(annotator, assignment, "a", ms=600)
            else:
                vote(
                    annotator, assignment, "a" if assignment.shown_order[0] == truth[assignment.comparison_id] else "b"
                )
    return project


def test_an_annotator_who_always_picks_left_is_flagged(biased_project):
    report = project_quality(biased_project)
    rows = {r.username: r for r in report.annotators}
    lefty = rows["lefty"]
    assert lefty.left_share == 1.0
    assert lefty.position_bias_p < 1e-8
    assert {"position_bias", "too_fast", "one_key"} <= set(lefty.flags)
    assert lefty.majority_agreement == pytest.approx(0.5, abs=0.3)  # chance level
    for name in ("careful0", "careful1", "careful2", "careful3"):
        assert rows[name].majority_agreement == 1.0
        assert rows[name].flags == []
        assert 0.2 < rows[name].left_share < 0.8
        assert rows[name].median_time_ms == 5000


def test_agreement_is_high_among_the_careful_and_drops_with_the_spammer(biased_project):
    report = project_quality(biased_project)
    overall = report.agreement[0]
    assert overall.units == 30
    # 4 of 5 coders agree on every unit; the fifth agrees on the units where "left" was right.
    lucky = round(next(r for r in report.annotators if r.username == "lefty").majority_agreement * 30)
    assert overall.percent_agreement == pytest.approx((30 * 6 + lucky * 4) / (30 * 10))
    assert 0.3 < overall.alpha_nominal < 0.9


def test_gold_checks_are_mixed_in_invisibly_and_pause_a_failing_annotator():
    careless = make_user("careless")
    project = make_project(
        annotators=[careless], overlap_target=1, gold_rate=1.0, gold_min_accuracy=0.8, gold_min_answers=3
    )
    comparisons = make_comparisons(project, 8)
    golds = comparisons[:4]
    for gold in golds:
        winner = list(gold.items.values_list("completion_id", flat=True))[0]
        comparison_set_gold(comparison=gold, label="winner", winner_completion_id=winner)

    answered = 0
    while (result := next_comparison(annotator=careless, project=project)).assignment:
        assignment = result.assignment
        assert assignment.comparison_id in {g.pk for g in golds}  # gold_rate 1.0: only gold
        gold = Comparison.objects.get(pk=assignment.comparison_id)
        wrong = "b" if assignment.shown_order[0] == gold.gold_winner_id else "a"
        vote(careless, assignment, wrong)
        answered += 1
    assert result.reason == "paused"
    assert answered == 3  # paused as soon as 3 answers were all wrong
    membership = Membership.objects.get(user=careless, project=project)
    assert membership.paused and "gold accuracy 0%" in membership.paused_reason
    row = project_quality(project).annotators[0]
    assert (row.gold_answered, row.gold_accuracy, row.paused) == (3, 0.0, True)
    assert "gold_failing" in row.flags


def test_gold_does_not_count_toward_progress_or_exports(tmp_path):
    from annotate.export.rows import iter_preference_rows
    from annotate.selectors import project_progress

    annotators = [make_user() for _ in range(3)]
    project = make_project(annotators=annotators, overlap_target=1, gold_rate=0.0)
    gold, normal = make_comparisons(project, 2)
    comparison_set_gold(comparison=gold, label="tie")
    assert project_progress(project).votes_needed == 1
    for annotator in annotators:
        if assignment := next_comparison(annotator=annotator, project=project).assignment:
            vote(annotator, assignment, "tie")
    assert Assignment.objects.filter(comparison=gold).count() == 0  # rate 0: never handed out
    assert [r["comparison_id"] for r in iter_preference_rows(project)] == [normal.pk]


def test_gold_answers_are_validated():
    from prefloop.core.errors import InvalidSetting

    project = make_project()
    comparison = make_comparisons(project, 1)[0]
    with pytest.raises(InvalidSetting, match="winner_completion_id"):
        comparison_set_gold(comparison=comparison, label="winner", winner_completion_id=999_999)


def test_quality_endpoint_for_researchers(api, biased_project):
    researcher = make_user(role=User.Role.RESEARCHER)
    biased_project.memberships.create(user=researcher, role="researcher")
    body = api(researcher).get(f"/api/projects/{biased_project.pk}/quality/").json()
    assert body["agreement"][0]["units"] == 30
    assert any("position_bias" in a["flags"] for a in body["annotators"])
    annotator = User.objects.get(username="careful0")
    assert api(annotator).get(f"/api/projects/{biased_project.pk}/quality/").status_code == 404


def test_researchers_mark_gold_through_the_api(api):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    comparison = make_comparisons(project, 1)[0]
    listing = api(researcher).get(f"/api/projects/{project.pk}/comparisons/").json()["results"][0]
    winner = listing["completions"][1]["id"]
    response = api(researcher).post(
        f"/api/comparisons/{comparison.pk}/gold/", {"label": "winner", "winner_completion_id": winner}, format="json"
    )
    assert response.status_code == 200 and response.json()["gold_winner_id"] == winner
    stranger = make_user(role=User.Role.RESEARCHER)
    assert (
        api(stranger).post(f"/api/comparisons/{comparison.pk}/gold/", {"label": "tie"}, format="json").status_code
        == 404
    )


def test_real_prd_votes_have_moderate_agreement(real_data):
    project = make_project(strength_scale=0)
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    agreement = project_quality(project).agreement[0]
    assert agreement.units > 1000
    # Crowd pairwise judgements of strong chat models agree only moderately.
    assert 0.1 < agreement.alpha_nominal < 0.7
