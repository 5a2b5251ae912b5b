"""Statistics on any data: degenerate inputs give finite numbers and a warning, or "not enough data".

One system, one-sided wins, all ties, comparison graphs that fall apart, extreme counts, a single
annotator, an empty project. Property tests (hypothesis, derandomised) over the math; API and page
tests over a project whose votes were one-sided (issue 14: they answered 500, Singular matrix).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from annotate.leaderboard import LeaderboardOptions, PairCounts, compute_leaderboard
from annotate.leaderboard.bootstrap import bootstrap_theta, resample_counts
from annotate.leaderboard.bt import FALLBACK_RIDGE, fit_bt, mle_exists
from annotate.leaderboard.compute import comparison_groups
from annotate.leaderboard.elo import online_elo
from annotate.leaderboard.style import StyleBattles
from annotate.models import User, Vote
from annotate.quality.report import project_quality
from annotate.quality.stats import krippendorff_alpha, percent_agreement
from tests.annotate.test_leaderboard import pairwise, vote
from tests.factories import make_project, make_user

PROPERTY = hypothesis_settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
MODELS = ("m0", "m1", "m2", "m3", "m4")
SIZES = (1, 2, 3, 7, 1000, 10**6)  # extreme counts make far-apart ratings and underflowing p(1 − p)
outcome = st.sampled_from(("a", "b", "tie", "both_bad"))
size = st.sampled_from(SIZES)
any_records = st.lists(st.tuples(st.sampled_from(MODELS), st.sampled_from(MODELS), outcome, size), max_size=12)
# m_i beats m_j whenever i < j: the top system never lost, the bottom one never won.
one_sided = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 4), size).filter(lambda r: r[0] != r[1]), min_size=1, max_size=8
).map(lambda rs: [(MODELS[min(i, j)], MODELS[max(i, j)], "a", n) for i, j, n in rs])
all_ties = st.lists(
    st.tuples(st.sampled_from(MODELS), st.sampled_from(MODELS), st.just("tie"), size), min_size=1, max_size=8
)
# two groups that never met: {m0, m1} and {m2, m3, m4}
disconnected = st.tuples(
    st.lists(st.tuples(st.just("m0"), st.just("m1"), outcome, size), min_size=1, max_size=3),
    st.lists(
        st.tuples(st.sampled_from(MODELS[2:]), st.sampled_from(MODELS[2:]), outcome, size), min_size=1, max_size=6
    ),
).map(lambda groups: groups[0] + groups[1])
degenerate = st.one_of(any_records, one_sided, all_ties, disconnected)


def assert_board_is_finite_or_says_why(result, counts: PairCounts):
    json.dumps(result.as_dict(), allow_nan=False)  # what the API sends: no NaN, no inf
    if counts.total == 0 or counts.n_models < 2:
        assert result.ratings == [] and any(w.startswith("not enough data") for w in result.warnings)
        return
    for row in result.ratings:
        for value in (row.rating, row.lower, row.upper, row.online_elo):
            assert value is None or math.isfinite(value), row
    if not mle_exists(counts.win_matrix()):
        assert result.method["mle_exists"] is False and result.warnings
    if len(comparison_groups(counts)) > 1:
        assert any("never battled each other" in w for w in result.warnings)


def ordered(records) -> list[tuple[str, str, str]]:
    return [(a, b, o) for a, b, o, n in records for _ in range(min(n, 3))]


# --- Bradley-Terry, bootstrap, online Elo ---------------------------------------------------------


@PROPERTY
@given(records=degenerate, exclude_ties=st.booleans())
def test_the_leaderboard_never_raises_and_its_numbers_are_finite(records, exclude_ties):
    counts = PairCounts.from_records(records, exclude_ties=exclude_ties)
    options = LeaderboardOptions(bootstrap=20, exclude_ties=exclude_ties, online_elo=True)
    result = compute_leaderboard(counts, options=options, ordered_battles=ordered(records))
    assert_board_is_finite_or_says_why(result, counts)


@PROPERTY
@given(records=st.one_of(one_sided, disconnected, any_records), seed=st.integers(0, 3))
def test_bootstrap_rounds_are_finite_whatever_the_resamples_lose(records, seed):
    counts = PairCounts.from_records(records)
    if counts.n_models < 2:
        return
    ridge = 0.0 if mle_exists(counts.win_matrix()) else FALLBACK_RIDGE
    theta0 = fit_bt(counts.win_matrix(), ridge=ridge).theta
    thetas, with_ridge = bootstrap_theta(counts, rounds=30, seed=seed, theta0=theta0, ridge=ridge)
    assert np.isfinite(thetas).all() and thetas.shape == (30, counts.n_models)
    assert with_ridge == 30 if ridge else 0 <= with_ridge <= 30


@PROPERTY
@given(records=st.one_of(one_sided, disconnected))
def test_a_fit_with_the_fallback_ridge_is_finite_and_converges(records):
    wins = PairCounts.from_records(records).win_matrix()
    fit = fit_bt(wins, ridge=FALLBACK_RIDGE)
    assert np.isfinite(fit.theta).all() and fit.converged
    assert abs(fit.theta.sum()) < 1e-6


def test_bootstrap_refits_exactly_the_resamples_whose_mle_is_infinite_with_the_ridge():
    # The data's MLE is finite, but m1's two battles (one win, one loss) often resample one-sided;
    # the chord iteration used to report those as converged at a rating that had run off.
    counts = PairCounts.from_records(
        [("m0", "m1", "a", 1), ("m0", "m1", "b", 1), ("m0", "m2", "a", 30), ("m0", "m2", "b", 30)]
    )
    theta0 = fit_bt(counts.win_matrix()).theta
    thetas, with_ridge = bootstrap_theta(counts, rounds=100, seed=0, theta0=theta0)
    samples = resample_counts(counts, rounds=100, rng=np.random.default_rng(0))
    infinite = [k for k in range(100) if not mle_exists(counts.win_matrix(samples[k]))]
    assert with_ridge == len(infinite) > 0
    for k in infinite:
        expected = fit_bt(counts.win_matrix(samples[k]), ridge=FALLBACK_RIDGE).theta
        np.testing.assert_allclose(thetas[k], expected, atol=1e-8)


def test_disconnected_groups_are_each_centred_and_named_in_the_warning():
    counts = PairCounts.from_records([("x", "y", "a", 3), ("z", "w", "a", 2), ("z", "w", "b", 1)])
    result = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=20))
    by_model = {r.model: r.rating for r in result.ratings}
    assert by_model["x"] + by_model["y"] == pytest.approx(2000.0) and by_model["z"] + by_model["w"] == pytest.approx(
        2000.0
    )
    assert result.method["comparison_groups"] == 2
    assert any("w, z | x, y" in w or "x, y | w, z" in w for w in result.warnings)


def test_one_system_gives_not_enough_data():
    result = compute_leaderboard(PairCounts.from_records([("x", "x", "a", 5)]), options=LeaderboardOptions())
    assert result.ratings == [] and result.warnings[0].startswith("not enough data")


@PROPERTY
@given(battles=st.lists(st.tuples(st.sampled_from(MODELS), st.sampled_from(MODELS), outcome), max_size=300))
def test_online_elo_is_finite_on_any_battle_order(battles):
    ratings = online_elo(battles + [("m0", "m1", "a")] * 2000)  # a long one-sided run at the end
    assert all(math.isfinite(r) for r in ratings.values())


# --- style control --------------------------------------------------------------------------------

style_rows = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 3),
        st.sampled_from((0.0, 0.5, 1.0)),
        st.lists(st.integers(0, 5000), min_size=8, max_size=8),
    ),
    min_size=0,
    max_size=30,
)


@PROPERTY
@given(rows=style_rows, one_sided_votes=st.booleans())
def test_style_control_never_raises_and_is_finite(rows, one_sided_votes):
    rows = [(a, b, 1.0 if one_sided_votes else y, s) for a, b, y, s in rows]
    models = ["m0", "m1", "m2", "m3"]
    battles = StyleBattles(
        models=tuple(models),
        model_a=np.array([r[0] for r in rows], dtype=np.int64),
        model_b=np.array([r[1] for r in rows], dtype=np.int64),
        y=np.array([r[2] for r in rows]),
        style_a=np.array([r[3][:4] for r in rows], dtype=np.float64).reshape(-1, 4),
        style_b=np.array([r[3][4:] for r in rows], dtype=np.float64).reshape(-1, 4),
    )
    counts = PairCounts.from_arrays(battles.model_a, battles.model_b, np.round(2 - 2 * battles.y).astype(int), models)
    result = compute_leaderboard(
        counts, options=LeaderboardOptions(bootstrap=10, style_control=True), style_battles=battles
    )
    json.dumps(result.as_dict(), allow_nan=False)
    if counts.total and counts.n_models >= 2:
        assert all(math.isfinite(r.rating) and math.isfinite(r.lower) for r in result.ratings)
        assert all(math.isfinite(b) for b in result.style_coefficients.values())


# --- agreement ------------------------------------------------------------------------------------

units = st.dictionaries(
    st.integers(0, 20),
    st.dictionaries(
        st.sampled_from(("ann1", "ann2", "ann3")), st.sampled_from(("a", "b", "tie", "both_bad")), max_size=3
    ),
    max_size=15,
)


@PROPERTY
@given(units=units, level=st.sampled_from(("nominal", "ordinal")))
def test_alpha_and_agreement_are_none_or_finite_on_any_units(units, level):
    order = ["a", "tie", "both_bad", "b"]
    alpha = krippendorff_alpha(units, level=level, order=order)
    share = percent_agreement(units)
    assert alpha is None or math.isfinite(alpha)
    assert share is None or 0.0 <= share <= 1.0
    if all(len(coders) < 2 for coders in units.values()):
        assert alpha is None and share is None


def test_a_single_annotator_and_unanimous_votes_have_no_alpha():
    assert krippendorff_alpha({1: {"ann": "a"}, 2: {"ann": "b"}}) is None
    assert krippendorff_alpha({1: {"x": "tie", "y": "tie"}, 2: {"x": "tie", "y": "tie"}}) is None


# --- the project path: quality report, REST and the page, on both databases ----------------------


@pytest.fixture
def one_sided_project(db):
    """x beat y in every vote; z and w, who never met x or y, split theirs. The leaderboard used to
    answer 500 (LinAlgError: Singular matrix from the bootstrap's chord Newton)."""
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    comparison, sides = pairwise(project, ["x", "y"])
    for k in range(2):
        vote(comparison, sides, "a", f"v{k}")
    comparison, sides = pairwise(project, ["z", "w"])
    for k, choice in enumerate("ab"):
        vote(comparison, sides, choice, f"u{k}")
    return project, researcher


@pytest.mark.parametrize(
    "query", ["", "?bootstrap=100", "?bootstrap=100&elo=true&exclude_ties=true", "?style_control=true"]
)
def test_the_api_answers_a_one_sided_project_with_finite_ratings_and_warnings(api, one_sided_project, query):
    project, researcher = one_sided_project
    response = api(researcher).get(f"/api/projects/{project.pk}/leaderboard/{query}")
    assert response.status_code == 200, response.content
    body = json.loads(response.content)  # strict: NaN or inf would not parse into finite floats below
    assert [r["model"] for r in body["ratings"]][0] == "x"
    assert all(math.isfinite(r["rating"]) for r in body["ratings"])
    assert any("never battled each other" in w for w in body["warnings"])
    if "style_control" not in query:
        assert body["method"]["mle_exists"] is False and any("never lost" in w for w in body["warnings"])


def test_the_leaderboard_page_shows_a_one_sided_project_with_its_warnings(client, one_sided_project):
    project, researcher = one_sided_project
    client.force_login(researcher)
    response = client.get(f"/projects/{project.pk}/leaderboard/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "never lost" in page and "never battled each other" in page and "<svg" in page


def test_the_quality_report_of_an_empty_project_says_not_enough_data(api, db):
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    body = api(researcher).get(f"/api/projects/{project.pk}/quality/").json()
    assert body["agreement"] == [] and body["warnings"][0].startswith("not enough data")


def test_the_quality_report_with_a_single_annotator_says_not_enough_data(db):
    project = make_project()
    for choice in "aab":
        comparison, sides = pairwise(project, ["x", "y"])
        vote(comparison, sides, choice, "only-one")
    report = project_quality(project)
    assert report.agreement[0].units == 0 and report.agreement[0].alpha_nominal is None
    assert "not enough data" in report.warnings[0]


def test_the_quality_report_of_unanimous_ties_says_alpha_is_undefined(client, one_sided_project):
    project, researcher = one_sided_project
    Vote.objects.filter(comparison__project=project).update(choice="tie", winner=None, loser=None)
    report = project_quality(project)
    assert report.agreement[0].units == 2 and report.agreement[0].percent_agreement == 1.0
    assert "undefined" in report.warnings[0]
    client.force_login(researcher)
    assert "undefined" in client.get(f"/projects/{project.pk}/quality/").content.decode()


# (comparison 0..2, voter, choice, strength, ms): voters u* are the project's annotators, x* imported
report_votes = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(("u1", "u2", "x1", "x2")),
        st.sampled_from(("a", "b", "tie", "both_bad")),
        st.one_of(st.none(), st.integers(1, 3)),
        st.one_of(st.none(), st.integers(0, 10**6)),
    ),
    max_size=14,
    unique_by=lambda v: (v[0], v[1]),
)


@pytest.mark.django_db
@hypothesis_settings(
    PROPERTY, max_examples=15, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(votes=report_votes, strength_scale=st.sampled_from((0, 3)))
def test_the_quality_report_never_raises_and_says_why_a_figure_is_missing(votes, strength_scale):
    users = {name: User.objects.get_or_create(username=f"hyp-{name}")[0] for name in ("u1", "u2")}
    project = make_project(annotators=list(users.values()), strength_scale=strength_scale)
    comparisons = [pairwise(project, ["x", "y"]) for _ in range(3)]
    for index, voter, choice, strength, ms in votes:
        comparison, sides = comparisons[index]
        row = vote(comparison, sides, choice, voter)
        if voter in users:
            Vote.objects.filter(pk=row.pk).update(
                annotator=users[voter], external_annotator="", source="human", strength=strength, time_spent_ms=ms
            )
    report = project_quality(project)
    json.dumps(report.as_dict(), allow_nan=False)
    for a in report.agreement:
        assert all(v is None or math.isfinite(v) for v in (a.alpha_nominal, a.alpha_ordinal, a.percent_agreement))
        if a.alpha_nominal is None:
            assert any(w.startswith(a.aspect) for w in report.warnings)
    if not votes:
        assert report.warnings[0].startswith("not enough data")
    assert {r.username for r in report.annotators} == {"hyp-u1", "hyp-u2"}
