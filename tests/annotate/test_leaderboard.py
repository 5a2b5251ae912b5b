"""System leaderboard: Arena's reference figures, the database path, bootstrap, style control, API."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from scipy.optimize import minimize

from annotate.leaderboard import BattleFileError, LeaderboardOptions, PairCounts, compute_leaderboard, load_battles
from annotate.leaderboard.bootstrap import bootstrap_theta, resample_counts
from annotate.leaderboard.bt import fit_bt
from annotate.leaderboard.data import VoteFilter, project_leaderboard, project_pair_counts
from annotate.leaderboard.plots import battle_count_svg, ratings_ci_svg, win_rate_svg
from annotate.leaderboard.style import fit_style_bt, style_differences
from annotate.models import Comparison, ComparisonItem, Completion, Prompt, User, Vote
from annotate.services.importing import import_file
from tests.factories import make_project, make_user

# Computed by Chatbot Arena's own code (issue text).
DENSE_MLE = {"A": 1064.4988, "B": 1022.2300, "C": 977.7700, "D": 935.5012}
DENSE_ONLINE_ELO = {"A": 1019.8807, "B": 1006.6769, "C": 993.3379, "D": 980.1045}
# ../shared/data/real/README.md, one decimal.
PRD_REFERENCE = {
    "gpt4": 1133.5,
    "claude": 1129.3,
    "guanaco-65b": 994.4,
    "guanaco-33b": 991.8,
    "guanaco-7b": 986.1,
    "vicuna-13b": 971.8,
    "guanaco-13b": 964.5,
    "gpt35": 919.3,
    "bard": 909.4,
}
# Our fit at full precision (Newton to 1e-10): pinned so a regression shows below the README's rounding.
PRD_FIT = {
    "gpt4": 1133.5267,
    "claude": 1129.2680,
    "guanaco-65b": 994.3692,
    "guanaco-33b": 991.7515,
    "guanaco-7b": 986.1458,
    "vicuna-13b": 971.7587,
    "guanaco-13b": 964.4721,
    "gpt35": 919.3159,
    "bard": 909.3921,
}
PRD_FILE = re.compile(r"^answer_(.+)-vs-answer_(.+)-human-reviewer_threeclass\.jsonl$")


def dense_battles() -> list[dict]:
    strength = {"A": 3, "B": 2, "C": 1, "D": 0}
    rows = []
    for x, y in itertools.permutations("ABCD", 2):
        d = strength[x] - strength[y]
        rows += [{"model_a": x, "model_b": y, "winner": "model_a"}] * (2 + max(d, 0))
        rows += [{"model_a": x, "model_b": y, "winner": "model_b"}] * (2 + max(-d, 0))
        rows += [{"model_a": x, "model_b": y, "winner": "tie"}, {"model_a": x, "model_b": y, "winner": "tie (bothbad)"}]
    return rows


def write_json(path, rows, *, lines: bool = False):
    path.write_text("\n".join(json.dumps(r) for r in rows) if lines else json.dumps(rows, indent=1))
    return path


def ratings(result) -> dict[str, float]:
    return {r.model: r.rating for r in result.ratings}


def assert_close(got: dict, want: dict, tol: float):
    assert set(got) == set(want)
    for model, value in want.items():
        assert abs(got[model] - value) <= tol, (model, got[model], value)


# --- Arena's reference figures ----------------------------------------------------------------------


def test_dense_log_mle_matches_arenas_figures(tmp_path):
    log = load_battles(write_json(tmp_path / "dense.json", dense_battles()))
    assert len(log) == 92
    result = compute_leaderboard(log.pair_counts(), options=LeaderboardOptions(bootstrap=0))
    assert_close(ratings(result), DENSE_MLE, 0.01)
    assert result.method["ties_counted"] == 24 and result.method["battles"] == 92


def test_dense_log_online_elo_matches_arenas_figures_in_row_order(tmp_path):
    log = load_battles(write_json(tmp_path / "dense.jsonl", dense_battles(), lines=True))
    result = compute_leaderboard(
        log.pair_counts(), options=LeaderboardOptions(bootstrap=0, online_elo=True), ordered_battles=log.rows()
    )
    assert_close({r.model: r.online_elo for r in result.ratings}, DENSE_ONLINE_ELO, 0.01)


@pytest.mark.django_db
def test_prd_fit_from_the_database_matches_the_reference(real_data):
    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    result = project_leaderboard(project, options=LeaderboardOptions(bootstrap=0))
    assert result.method["battles"] == 7040 and result.method["ties_counted"] == 804
    assert {m: round(r, 1) for m, r in ratings(result).items()} == PRD_REFERENCE
    assert_close(ratings(result), PRD_FIT, 0.01)
    assert abs(np.mean(list(ratings(result).values())) - 1000) < 1e-6


def prd_battle_file(real_data, path):
    rows = []
    for file in sorted((real_data / "PRD" / "vicuna80" / "ratings-human").glob("*.jsonl")):
        model_a, model_b = PRD_FILE.match(file.name).groups()
        for line in file.read_text().splitlines():
            if line.strip():
                score = json.loads(line)["score"]
                rows.append(
                    {"model_a": model_a, "model_b": model_b, "winner": {1: "model_a", 2: "model_b", 3: "tie"}[score]}
                )
    return write_json(path, rows, lines=True)


def test_prd_fit_from_an_arena_battle_file_matches_the_reference(real_data, tmp_path):
    log = load_battles(prd_battle_file(real_data, tmp_path / "prd.jsonl"))
    result = compute_leaderboard(log.pair_counts(), options=LeaderboardOptions(bootstrap=0))
    assert len(log) == 7040
    assert {m: round(r, 1) for m, r in ratings(result).items()} == PRD_REFERENCE
    assert_close(ratings(result), PRD_FIT, 0.01)


def test_newton_fit_agrees_with_a_generic_optimiser_on_the_raw_likelihood(tmp_path):
    rows = dense_battles()
    models = sorted({r["model_a"] for r in rows})
    a = np.array([models.index(r["model_a"]) for r in rows])
    b = np.array([models.index(r["model_b"]) for r in rows])
    y = np.array([{"model_a": 1.0, "model_b": 0.0}.get(r["winner"], 0.5) for r in rows])

    def loss(t):
        z = t[a] - t[b]
        return float((np.logaddexp(0, z) - y * z).sum())

    t = minimize(loss, np.zeros(len(models)), method="BFGS", options={"gtol": 1e-10}).x
    independent = dict(zip(models, 1000 + 400 / np.log(10) * (t - t.mean())))
    log = load_battles(write_json(tmp_path / "d.json", rows))
    assert_close(
        ratings(compute_leaderboard(log.pair_counts(), options=LeaderboardOptions(bootstrap=0))), independent, 1e-3
    )


# --- bootstrap, anchoring, ties -------------------------------------------------------------------


def test_seeded_bootstrap_is_reproducible_and_the_seed_matters(tmp_path):
    counts = load_battles(write_json(tmp_path / "d.json", dense_battles())).pair_counts()
    first = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=50, seed=7))
    again = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=50, seed=7))
    other = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=50, seed=8))
    assert first.as_dict() == again.as_dict()
    assert [r.lower for r in first.ratings] != [r.lower for r in other.ratings]
    for r in first.ratings:
        assert r.lower < r.rating < r.upper
    assert first.method["seed"] == 7 and first.method["bootstrap_rounds"] == 50


def test_rank_counts_models_whose_lower_bound_beats_this_upper_bound(tmp_path):
    counts = load_battles(write_json(tmp_path / "d.json", dense_battles() * 20)).pair_counts()
    result = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=100, seed=1))
    for r in result.ratings:
        assert r.rank == 1 + sum(o.lower > r.upper for o in result.ratings)
    assert [r.rank for r in result.ratings] == [1, 2, 3, 4]  # 1,840 battles separate them all


def test_fast_bootstrap_equals_full_newton_on_the_same_resamples(tmp_path):
    counts = load_battles(write_json(tmp_path / "d.json", dense_battles() * 5)).pair_counts()
    theta0 = fit_bt(counts.win_matrix()).theta
    fast, fallback = bootstrap_theta(counts, rounds=40, seed=3, theta0=theta0)
    samples = resample_counts(counts, rounds=40, rng=np.random.default_rng(3))
    slow = fit_bt(counts.win_matrix(samples)).theta
    assert fallback == 0
    np.testing.assert_allclose(fast, slow, atol=1e-8)


def test_anchor_puts_the_model_at_its_rating_and_keeps_differences(tmp_path):
    counts = load_battles(write_json(tmp_path / "d.json", dense_battles())).pair_counts()
    plain = ratings(compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=0)))
    anchored = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=20, anchor=("D", 800.0)))
    shifted = ratings(anchored)
    assert shifted["D"] == pytest.approx(800.0)
    assert_close(shifted, {m: r - plain["D"] + 800 for m, r in plain.items()}, 1e-9)
    d = next(r for r in anchored.ratings if r.model == "D")
    assert d.lower == pytest.approx(800.0) and d.upper == pytest.approx(800.0)
    assert anchored.method["centre"] == "D = 800"


def test_unknown_anchor_is_refused_by_the_command(tmp_path):
    path = write_json(tmp_path / "d.json", dense_battles())
    with pytest.raises(CommandError, match="anchor model 'Z'"):
        call_command("leaderboard", battles=str(path), anchor="Z=1000", verbosity=0)
    with pytest.raises(CommandError, match="MODEL=RATING"):
        call_command("leaderboard", battles=str(path), anchor="nonsense", verbosity=0)


def test_excluding_ties_fits_the_decisive_battles_only(tmp_path):
    rows = dense_battles()
    decisive = [r for r in rows if "tie" not in r["winner"]]
    full = load_battles(write_json(tmp_path / "all.json", rows))
    options = LeaderboardOptions(bootstrap=0, exclude_ties=True)
    without = compute_leaderboard(full.without_ties().pair_counts(), options=options)
    only = compute_leaderboard(load_battles(write_json(tmp_path / "dec.json", decisive)).pair_counts(), options=options)
    assert without.method["battles"] == len(decisive) == 68
    assert ratings(without) == pytest.approx(ratings(only))
    assert ratings(without) != pytest.approx(
        ratings(compute_leaderboard(full.pair_counts(), options=LeaderboardOptions(bootstrap=0)))
    )
    assert without.method["ties"] == "excluded"


def test_a_model_that_never_lost_gets_finite_ratings_and_a_warning():
    counts = PairCounts.from_records([("x", "y", "a", 5)])
    result = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=10))
    assert result.method["mle_exists"] is False and result.warnings
    assert all(np.isfinite(r.rating) for r in result.ratings)
    assert ratings(result)["x"] > ratings(result)["y"]


# --- style control --------------------------------------------------------------------------------


def planted_length_bias(seed: int = 0, battles: int = 4000):
    """Three equally good models; 'verbose' writes ~3x longer answers and length sways the vote."""
    rng = np.random.default_rng(seed)
    models = ("concise", "plain", "verbose")
    mean_tokens = np.array([100.0, 200.0, 300.0])
    a = rng.integers(0, 3, battles)
    b = (a + rng.integers(1, 3, battles)) % 3
    # lengths vary within a model too, so that length and identity can be told apart
    tokens_a = rng.poisson(mean_tokens[a] * np.exp(rng.normal(0, 0.6, battles)))
    tokens_b = rng.poisson(mean_tokens[b] * np.exp(rng.normal(0, 0.6, battles)))
    d = (tokens_a - tokens_b) / (tokens_a + tokens_b + 1)
    p = 1 / (1 + np.exp(-4.0 * d))  # length is the only thing that matters
    u = rng.random(battles)
    winner = np.where(rng.random(battles) < 0.1, "tie", np.where(u < p, "model_a", "model_b"))
    rows = []
    for k in range(battles):
        meta = {"sum_assistant_a_tokens": int(tokens_a[k]), "sum_assistant_b_tokens": int(tokens_b[k])}
        meta |= {
            f"{e}_{s}": {"h1": 0} if e == "header_count" else int(rng.integers(0, 3))
            for e in ("header_count", "list_count", "bold_count")
            for s in "ab"
        }
        rows.append(
            {
                "model_a": models[a[k]],
                "model_b": models[b[k]],
                "winner": str(winner[k]),
                "tstamp": float(k),
                "conv_metadata": meta,
            }
        )
    return rows


def test_style_control_removes_a_planted_length_bias(tmp_path):
    log = load_battles(write_json(tmp_path / "s.jsonl", planted_length_bias(), lines=True), require_style=True)
    plain = ratings(compute_leaderboard(log.pair_counts(), options=LeaderboardOptions(bootstrap=0)))
    styled = compute_leaderboard(
        log.pair_counts(),
        options=LeaderboardOptions(bootstrap=0, style_control=True),
        style_battles=log.style_battles(),
    )
    assert plain["verbose"] - plain["concise"] > 150  # seed 0: 230
    assert abs(ratings(styled)["verbose"] - ratings(styled)["concise"]) < 40  # seed 0: 19
    assert styled.style_coefficients["sum_assistant_tokens"] > 0.5
    assert abs(styled.style_coefficients["list_count"]) < 0.1
    assert styled.style_coefficients["header_count"] == 0.0  # never differs: left out, with a warning
    assert styled.warnings


def test_style_control_fit_equals_arenas_logistic_regression(tmp_path):
    """Arena fits sklearn's LogisticRegression(fit_intercept=False) (C = 1) on battles duplicated,
    a tie as one win each way, model columns ±ln 10: the same optimum as our summed loss + 0.25‖·‖²."""
    from sklearn.linear_model import LogisticRegression

    log = load_battles(
        write_json(tmp_path / "s.jsonl", planted_length_bias(seed=1, battles=1500), lines=True), require_style=True
    )
    battles = log.style_battles()
    features, _, _ = style_differences(battles.style_a, battles.style_b)
    n, m = len(battles.models), len(battles.y)
    x = np.zeros((2 * m, n + features.shape[1]))
    rows = np.arange(2 * m)
    x[rows, np.tile(battles.model_a, 2)] = np.log(10)
    x[rows, np.tile(battles.model_b, 2)] = -np.log(10)
    x[:, n:] = np.tile(features, (2, 1))
    y = np.concatenate([battles.y >= 0.5, battles.y == 1.0]).astype(float)  # a win twice; a tie once each way
    lr = LogisticRegression(fit_intercept=False, C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x, y)
    ours = fit_style_bt(battles.model_a, battles.model_b, battles.y, features, n)
    np.testing.assert_allclose(
        ours.theta / np.log(10) * 400, (lr.coef_[0][:n] - lr.coef_[0][:n].mean()) * 400, atol=0.01
    )
    np.testing.assert_allclose(ours.beta, lr.coef_[0][n:], atol=1e-4)


def test_style_control_from_a_battle_file_reports_coefficients_in_json(tmp_path, capsys):
    path = write_json(tmp_path / "s.jsonl", planted_length_bias(battles=600), lines=True)
    call_command("leaderboard", battles=str(path), style_control=True, bootstrap=5, format="json", verbosity=0)
    out = json.loads(capsys.readouterr().out)
    assert set(out["style_coefficients"]) == {"sum_assistant_tokens", "header_count", "list_count", "bold_count"}
    assert out["method"]["model"] == "bradley-terry with style control"
    assert {"model", "rating", "lower", "upper", "rank", "battles"} <= set(out["ratings"][0])


# --- battle files ---------------------------------------------------------------------------------


def test_bad_jsonl_lines_are_named_with_their_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"model_a": "x", "model_b": "y", "winner": "model_a"}\n'
        '{"model_a": "x", "winner": "draw"}\n'
        "not json\n"
        '{"model_a": "x", "model_b": "y", "winner": "tie", "tstamp": "yesterday"}\n'
    )
    with pytest.raises(BattleFileError) as error:
        load_battles(path)
    message = str(error.value)
    assert "bad.jsonl:2: field 'model_b'" in message
    assert "bad.jsonl:2: field 'winner': 'draw' is not one of" in message
    assert "bad.jsonl:3: not valid JSON" in message
    assert "bad.jsonl:4: field 'tstamp'" in message


def test_json_array_records_are_named_by_the_line_they_start_on(tmp_path):
    path = write_json(
        tmp_path / "bad.json",
        [{"model_a": "x", "model_b": "y", "winner": "model_a"}, {"model_a": "x", "model_b": "y", "winner": 3}],
    )
    with pytest.raises(BattleFileError, match=r"bad\.json:7: field 'winner'"):
        load_battles(path)


def test_style_control_needs_conv_metadata_on_every_line(tmp_path):
    path = write_json(tmp_path / "d.jsonl", dense_battles()[:3], lines=True)
    with pytest.raises(CommandError, match=r"d\.jsonl:1: field 'conv_metadata': missing"):
        call_command("leaderboard", battles=str(path), style_control=True, verbosity=0)


def test_command_prints_a_table_with_online_elo(tmp_path, capsys):
    path = write_json(tmp_path / "d.json", dense_battles())
    call_command("leaderboard", battles=str(path), elo=True, bootstrap=10, verbosity=0)
    out = capsys.readouterr().out
    assert "online Elo" in out and "1019.9" in out and "bootstrap 10 rounds, seed 0" in out


# --- the database path ----------------------------------------------------------------------------


def pairwise(project, models, *, round=0):
    prompt = Prompt.objects.create(project=project, key=f"p{Prompt.objects.count()}", text="q")
    completions = [
        Completion.objects.create(prompt=prompt, key=m, model_name=m, text="# Title\n" * (k + 1))
        for k, m in enumerate(models)
    ]
    comparison = Comparison.objects.create(
        project=project, prompt=prompt, key="-".join(str(c.pk) for c in completions), round=round
    )
    ComparisonItem.objects.bulk_create(
        ComparisonItem(comparison=comparison, completion=c, position=p) for p, c in enumerate(completions)
    )
    return comparison, completions


def vote(comparison, completions, choice, voter, *, shown=None, ranking=None, aspect="overall"):
    shown = shown or [c.pk for c in completions]
    winner = loser = None
    if choice in ("a", "b"):
        winner, loser = (shown[0], shown[1]) if choice == "a" else (shown[1], shown[0])
    return Vote.objects.create(
        comparison=comparison,
        external_annotator=voter,
        source="imported",
        choice=choice,
        shown_order=shown,
        winner_id=winner,
        loser_id=loser,
        ranking=ranking,
        aspect=aspect,
    )


@pytest.mark.django_db
def test_votes_become_battles_whatever_side_they_were_shown_on():
    project = make_project()
    comparison, (x, y) = pairwise(project, ["x", "y"])
    vote(comparison, [x, y], "a", "v1")  # x wins shown as A
    vote(comparison, [x, y], "a", "v2", shown=[y.pk, x.pk])  # y wins shown as A
    vote(comparison, [x, y], "b", "v3", shown=[y.pk, x.pk])  # x wins shown as B
    vote(comparison, [x, y], "tie", "v4")
    vote(comparison, [x, y], "both_bad", "v5", shown=[y.pk, x.pk])
    vote(comparison, [x, y], "a", "v6", aspect="honesty")  # another aspect: not counted
    counts = project_pair_counts(project)
    assert counts.models == ("x", "y")
    assert counts.counts.tolist() == [[2, 2, 1]] and counts.both_bad.tolist() == [1]
    assert project_pair_counts(project, VoteFilter(exclude_ties=True)).counts.tolist() == [[2, 0, 1]]
    assert project_pair_counts(project, VoteFilter(aspect="honesty")).counts.tolist() == [[1, 0, 0]]


@pytest.mark.django_db
def test_ranked_votes_expand_into_every_pair_and_gold_and_rounds_filter():
    project = make_project()
    comparison, (x, y, z) = pairwise(project, ["x", "y", "z"])
    vote(comparison, [x, y, z], "ranked", "v1", ranking=[z.pk, x.pk, y.pk])
    gold, (gx, gy) = pairwise(project, ["x", "y"])
    Comparison.objects.filter(pk=gold.pk).update(gold_label="tie")
    vote(gold, [gx, gy], "tie", "v2")
    later, (lx, ly) = pairwise(project, ["x", "y"], round=2)
    vote(later, [lx, ly], "a", "v3")
    counts = project_pair_counts(project, VoteFilter(rounds=(0,)))
    cells = {(counts.models[i], counts.models[j]): c.tolist() for (i, j), c in zip(counts.pairs, counts.counts)}
    assert cells == {("x", "y"): [1, 0, 0], ("x", "z"): [0, 0, 1], ("y", "z"): [0, 0, 1]}
    assert project_pair_counts(project).total == 4
    assert project_pair_counts(project, VoteFilter(rounds=(2,))).total == 1


# --- REST -----------------------------------------------------------------------------------------


@pytest.fixture
def leaderboard_setup(db):
    researcher = make_user("res", role=User.Role.RESEARCHER)
    annotator = make_user("ann")
    stranger = make_user("stranger", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher], annotators=[annotator])
    make_project(researchers=[stranger])
    comparison, sides = pairwise(project, ["x", "y"])
    for k, choice in enumerate(["a", "a", "b", "tie", "a"]):
        vote(comparison, sides, choice, f"v{k}")
    return project, researcher, annotator, stranger


def test_researchers_get_ratings_matrices_and_method(api, leaderboard_setup):
    project, researcher, _, _ = leaderboard_setup
    response = api(researcher).get(
        f"/api/projects/{project.pk}/leaderboard/?bootstrap=20&seed=3&anchor=y=1000&elo=true"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["model"] for r in body["ratings"]] == ["x", "y"] == body["models"]
    assert body["ratings"][1]["rating"] == pytest.approx(1000.0)
    assert body["battle_counts"] == [[0, 5], [5, 0]]
    assert body["win_rate"][0][1] == pytest.approx(0.75) and body["win_rate"][0][0] is None
    assert body["method"]["seed"] == 3 and body["method"]["bootstrap_rounds"] == 20
    assert body["ratings"][0]["online_elo"] is not None


@pytest.mark.parametrize("who", ["annotator", "stranger"])
def test_annotators_and_researchers_of_other_projects_get_not_found(api, leaderboard_setup, who):
    project, _, annotator, stranger = leaderboard_setup
    user = {"annotator": annotator, "stranger": stranger}[who]
    assert api(user).get(f"/api/projects/{project.pk}/leaderboard/").status_code == 404


def test_bad_query_parameters_are_refused(api, leaderboard_setup):
    project, researcher, _, _ = leaderboard_setup
    client = api(researcher)
    assert client.get(f"/api/projects/{project.pk}/leaderboard/?anchor=nobody=1000").status_code == 400
    assert client.get(f"/api/projects/{project.pk}/leaderboard/?bootstrap=-1").status_code == 400
    assert client.get(f"/api/projects/{project.pk}/leaderboard/?aspect=made-up").status_code == 400


def test_an_empty_project_answers_with_an_empty_board(api, db):
    researcher = make_user("r", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    body = api(researcher).get(f"/api/projects/{project.pk}/leaderboard/").json()
    assert body["ratings"] == [] and body["warnings"]


# --- plots ----------------------------------------------------------------------------------------


def test_svg_plots_escape_model_names():
    counts = PairCounts.from_records([("<script>x</script>", "b&c", "a", 3), ("<script>x</script>", "b&c", "b", 2)])
    result = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=10))
    for svg in (ratings_ci_svg(result), win_rate_svg(result), battle_count_svg(result)):
        assert svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg and "b&amp;c" in svg
