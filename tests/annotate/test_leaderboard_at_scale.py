"""The leaderboard's fast paths give what the plain ones give: the pyarrow battle-file reader builds
the line-by-line reader's arrays, the one-statement SQL counts equal counts of the vote rows, and
the multinomial bootstrap over pair counts has the distribution of Arena's battle-level bootstrap."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from annotate.leaderboard import LeaderboardOptions, compute_leaderboard, load_battles
from annotate.leaderboard.battles import _load_line_by_line
from annotate.leaderboard.battles_arrow import read_jsonl_columns
from annotate.leaderboard.bt import fit_bt, to_elo
from annotate.leaderboard.counts import PairCounts
from annotate.leaderboard.data import project_pair_counts
from annotate.leaderboard.style import STYLE_FIELDS
from annotate.services.importing import import_file
from tests.factories import make_project

PRD_FILE = re.compile(r"^answer_(.+)-vs-answer_(.+)-human-reviewer_threeclass\.jsonl$")
WINNER = {1: "model_a", 2: "model_b", 3: "tie"}


def prd_rows(real_data) -> list[dict]:
    rows = []
    for file in sorted((real_data / "PRD" / "vicuna80" / "ratings-human").glob("*.jsonl")):
        model_a, model_b = PRD_FILE.match(file.name).groups()
        rows += [
            {"model_a": model_a, "model_b": model_b, "winner": WINNER[json.loads(line)["score"]]}
            for line in file.read_text().splitlines()
            if line.strip()
        ]
    return rows


def write_lines(path, rows, *, blank_every: int = 0):
    lines = [json.dumps(r) for r in rows]
    if blank_every:
        lines = [x for k, line in enumerate(lines) for x in ([line, ""] if k % blank_every == 0 else [line])]
    path.write_text("\n".join(lines) + "\n")
    return path


def styled_rows(n: int, seed: int) -> list[dict]:
    """Arena-shaped rows: tstamps out of order, ties both kinds, style counts as ints and as
    per-level dicts (Arena sums a dict's values)."""
    rng = np.random.default_rng(seed)
    winners = ["model_a", "model_b", "tie", "tie (bothbad)"]
    rows = []
    for k in range(n):
        a, b = rng.choice(["x", "y", "z", "w"], size=2, replace=False)
        meta = {
            "sum_assistant_a_tokens": int(rng.integers(1, 900)),
            "sum_assistant_b_tokens": int(rng.integers(1, 900)),
            "header_count_a": {"h1": int(rng.integers(0, 3)), "h2": int(rng.integers(0, 3))},
            "header_count_b": {"h1": int(rng.integers(0, 3)), "h2": int(rng.integers(0, 3))},
            "list_count_a": {"ordered": int(rng.integers(0, 4)), "unordered": 1},
            "list_count_b": {"ordered": 0, "unordered": 2},
            "bold_count_a": {"**": int(rng.integers(0, 5)), "__": 0},
            "bold_count_b": {"**": 1, "__": int(rng.integers(0, 2))},
        }
        rows.append(
            {
                "model_a": a,
                "model_b": b,
                "winner": winners[k % 4],
                "tstamp": float(rng.integers(0, n // 2)),
                "conv_metadata": meta,
            }
        )
    return rows


def assert_same_log(fast, slow):
    assert fast.models == slow.models
    for name in ("model_a", "model_b", "outcome", "both_bad", "style_a", "style_b"):
        got, want = getattr(fast, name), getattr(slow, name)
        assert (got is None) == (want is None), name
        if want is not None:
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=name)


# --- the pyarrow reader ---------------------------------------------------------------------------


def test_arrow_reader_builds_the_line_readers_arrays_on_prd(real_data, tmp_path):
    path = write_lines(tmp_path / "prd.jsonl", prd_rows(real_data), blank_every=50)
    assert read_jsonl_columns(path, STYLE_FIELDS) is not None  # the fast path answered
    fast = load_battles(path)
    assert len(fast) == 7040
    assert_same_log(fast, _load_line_by_line(path, require_style=False))


def test_arrow_reader_sorts_by_tstamp_stably_and_sums_style_dicts(tmp_path):
    path = write_lines(tmp_path / "styled.jsonl", styled_rows(400, seed=5))
    assert read_jsonl_columns(path, STYLE_FIELDS) is not None
    fast = load_battles(path, require_style=True)
    assert fast.style_a is not None and fast.both_bad.sum() == 100
    assert_same_log(fast, _load_line_by_line(path, require_style=True))


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"model_a": "x", "model_b": "y", "winner": "draw"}', r"bad\.jsonl:3: field 'winner': 'draw' is not one of"),
        ('{"model_a": "x", "winner": "tie"}', r"bad\.jsonl:3: field 'model_b': missing"),
        ('{"model_a": " ", "model_b": "y", "winner": "tie"}', r"bad\.jsonl:3: field 'model_a': missing"),
        ('{"model_a": "x", "model_b": "y", "winner": "tie", "tstamp": "noon"}', r"bad\.jsonl:3: field 'tstamp'"),
        ('{"model_a": "x", "model_b": 7, "winner": "tie"}', r"bad\.jsonl:3: field 'model_b'"),
        ("not json", r"bad\.jsonl:3: not valid JSON"),
    ],
)
def test_files_the_arrow_reader_cannot_vouch_for_get_the_line_readers_errors(tmp_path, bad_line, message):
    good = '{"model_a": "x", "model_b": "y", "winner": "model_a", "tstamp": 1}'
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{good}\n{bad_line}\n{good}\n")
    assert read_jsonl_columns(path, STYLE_FIELDS) is None
    with pytest.raises(ValueError, match=message):
        load_battles(path)


def test_style_control_on_a_file_without_conv_metadata_still_names_the_line(tmp_path):
    path = write_lines(tmp_path / "plain.jsonl", [{"model_a": "x", "model_b": "y", "winner": "tie"}] * 3)
    assert read_jsonl_columns(path, STYLE_FIELDS) is not None
    with pytest.raises(ValueError, match=r"plain\.jsonl:1: field 'conv_metadata': missing"):
        load_battles(path, require_style=True)


# --- SQL counts -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sql_counts_equal_the_counts_of_the_same_battles_read_from_a_file(real_data, tmp_path):
    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    from_sql = project_pair_counts(project)
    from_file = load_battles(write_lines(tmp_path / "prd.jsonl", prd_rows(real_data))).pair_counts()
    assert from_sql.models == from_file.models
    np.testing.assert_array_equal(from_sql.pairs, from_file.pairs)
    # (i won, tie, j won) per pair i < j of sorted names: whichever side each battle was shown on.
    np.testing.assert_array_equal(from_sql.counts, from_file.counts)


# --- bootstrap over counts = Arena's battle-level bootstrap ---------------------------------------


def battle_level_bootstrap(rows: list[dict], models: list[str], rounds: int, seed: int) -> np.ndarray:
    """Arena's recipe: resample the battle rows with replacement, fit each resample (Elo scale)."""
    index = {m: k for k, m in enumerate(models)}
    a = np.array([index[r["model_a"]] for r in rows])
    b = np.array([index[r["model_b"]] for r in rows])
    score = np.array([{"model_a": 1.0, "model_b": 0.0}.get(r["winner"], 0.5) for r in rows])
    rng = np.random.default_rng(seed)
    wins = np.zeros((rounds, len(models), len(models)))
    for r in range(rounds):
        pick = rng.integers(0, len(rows), size=len(rows))
        np.add.at(wins[r], (a[pick], b[pick]), score[pick])
        np.add.at(wins[r], (b[pick], a[pick]), 1.0 - score[pick])
    return to_elo(fit_bt(wins).theta)


def test_count_bootstrap_has_the_distribution_of_the_battle_level_bootstrap_on_prd(real_data):
    rows = prd_rows(real_data)
    models = sorted({r["model_a"] for r in rows} | {r["model_b"] for r in rows})
    index = {m: k for k, m in enumerate(models)}
    counts = PairCounts.from_arrays(
        np.array([index[r["model_a"]] for r in rows]),
        np.array([index[r["model_b"]] for r in rows]),
        np.array([{"model_a": 0, "tie": 1, "model_b": 2}[r["winner"]] for r in rows]),
        models,
    )
    rounds = 1000
    ours = compute_leaderboard(counts, options=LeaderboardOptions(bootstrap=rounds, seed=11))
    from annotate.leaderboard.bootstrap import bootstrap_theta

    theta0 = fit_bt(counts.win_matrix()).theta
    samples = to_elo(bootstrap_theta(counts, rounds=rounds, seed=11, theta0=theta0)[0])
    arena = battle_level_bootstrap(rows, models, rounds, seed=12)
    spread = arena.std(axis=0)
    assert (spread > 5).all()  # ~ 10-20 Elo on 7,040 battles: a real interval to compare
    # Means differ by Monte-Carlo noise only: SE of a difference of two means is spread·√(2/R).
    assert (np.abs(samples.mean(axis=0) - arena.mean(axis=0)) < 4 * spread * np.sqrt(2 / rounds)).all()
    # Spreads agree to sampling error (a std's relative SE is 1/√(2R) ≈ 2 % at R = 1000).
    np.testing.assert_allclose(samples.std(axis=0) / spread, 1.0, atol=0.15)
    # And so do the 95 % bounds the board shows (quantiles are noisier: half a spread).
    lower, upper = np.quantile(arena, [0.025, 0.975], axis=0)
    board = {r.model: r for r in ours.ratings}
    for k, model in enumerate(models):
        assert abs(board[model].lower - lower[k]) < 0.5 * spread[k], model
        assert abs(board[model].upper - upper[k]) < 0.5 * spread[k], model


@pytest.mark.django_db
def test_the_sql_counts_honour_every_filter_of_project_votes(real_data):
    from annotate.leaderboard.data import VoteFilter, project_votes

    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    assert project_pair_counts(project, VoteFilter(sources=("human",))).total == 0  # PRD votes are imported
    without_ties = project_pair_counts(project, VoteFilter(exclude_ties=True))
    assert without_ties.total == 7040 - 804 and without_ties.ties == 0
    # One vote less in the queryset is one battle less in the counts.
    dropped = project_votes(project, VoteFilter()).filter(choice="a").first()
    dropped.delete()
    assert project_pair_counts(project).total == 7039
