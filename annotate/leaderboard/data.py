"""The Django side of the leaderboard: a project's votes as battle counts, aggregated in SQL.

A pairwise vote is one battle between the models that wrote its two completions; a K-way
`ranked` vote is K(K−1)/2 battles (each completion beats every one ranked below it). Gold checks
never count. Decisive votes group by (winner model, loser model); ties by the comparison's two
completions; so loading a million votes is two GROUP BY queries returning at most a few
thousand rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.db.models import QuerySet

from annotate.export.aggregate import pair_votes_from_ranking, tied_pairs_from_ranking
from annotate.leaderboard.compute import LeaderboardOptions, LeaderboardResult, compute_leaderboard
from annotate.leaderboard.counts import PairCounts
from annotate.leaderboard.style import StyleBattles, text_style
from annotate.models import ComparisonItem, Completion, Project, Vote

TIES = (Vote.Choice.TIE, Vote.Choice.BOTH_BAD)
SOURCES = (Vote.Source.HUMAN, Vote.Source.IMPORTED)


@dataclass(frozen=True)
class VoteFilter:
    aspect: str | None = None  # None: the project's first aspect ("overall" when it has none)
    rounds: tuple[int, ...] | None = None
    sources: tuple[str, ...] = SOURCES
    exclude_ties: bool = False
    labels: str = "human"  # "human" | "judge" (LLM-judge verdicts, judging/leaderboard.py) | "both"

    def describe(self, project: Project) -> dict:
        return {
            "source": f"project {project.name!r} (id {project.pk}), gold checks left out",
            "aspect": self.aspect or project.aspect_names[0],
            "rounds": list(self.rounds) if self.rounds else "all",
            "vote_sources": [str(s) for s in self.sources],
            "labels": self.labels,
        }


def project_votes(project: Project, filters: VoteFilter) -> QuerySet[Vote]:
    votes = Vote.objects.filter(
        comparison__project=project,
        comparison__gold_label="",
        aspect=filters.aspect or project.aspect_names[0],
        source__in=filters.sources,
    )
    if filters.rounds:
        votes = votes.filter(comparison__round__in=filters.rounds)
    if filters.exclude_ties:
        votes = votes.exclude(choice__in=TIES)
    return votes.none() if filters.labels == "judge" else votes


def _judge_args(project: Project, filters: VoteFilter) -> dict:
    return {
        "aspect": filters.aspect or project.aspect_names[0],
        "rounds": filters.rounds,
        "exclude_ties": filters.exclude_ties,
    }


def project_pair_counts(project: Project, filters: VoteFilter = VoteFilter()) -> PairCounts:
    """Battle counts per model pair and outcome, grouped in the database: one GROUP BY over the
    pairwise votes (a few thousand rows back for a million votes), plus the K-way rankings."""
    records = _pair_records(project, filters)
    records += _ranked_records(project_votes(project, filters), exclude_ties=filters.exclude_ties)
    if filters.labels != "human":
        from judging.leaderboard import judge_pair_records

        records += judge_pair_records(project, **_judge_args(project, filters))
    return PairCounts.from_records(records)


DECISIVE = (Vote.Choice.A, Vote.Choice.B)
# Decisive votes grouped by (winner model, loser model); ties by the comparison's first two
# completions, as counts.OUTCOMES names them. `{votes}` is the SQL of project_votes.
_PAIR_COUNTS_SQL = """
SELECT w.model_name, l.model_name, 'a', count(*)
FROM ({votes}) v
JOIN {completion} w ON w.id = v.winner_id
JOIN {completion} l ON l.id = v.loser_id
WHERE v.choice IN ({decisive})
GROUP BY 1, 2
UNION ALL
SELECT c0.model_name, c1.model_name, v.choice, count(*)
FROM ({votes}) v
JOIN {item} i0 ON i0.comparison_id = v.comparison_id AND i0.position = 0
JOIN {item} i1 ON i1.comparison_id = v.comparison_id AND i1.position = 1
JOIN {completion} c0 ON c0.id = i0.completion_id
JOIN {completion} c1 ON c1.id = i1.completion_id
WHERE v.choice IN ({ties})
GROUP BY 1, 2, 3
"""


def pair_counts_sql(project: Project, filters: VoteFilter) -> tuple[str, tuple]:
    """One statement: GROUP BY (model_a, model_b, outcome) over the pairwise votes that
    `project_votes` selects. Its SQL is the inner query of both arms, so a filter added to
    project_votes applies here too. With filters.exclude_ties the tie arm finds nothing."""
    votes = project_votes(project, filters).values("comparison_id", "winner_id", "loser_id", "choice").order_by()
    inner, params = votes.query.sql_with_params()
    sql = _PAIR_COUNTS_SQL.format(
        votes=inner,
        item=ComparisonItem._meta.db_table,
        completion=Completion._meta.db_table,
        decisive=", ".join(f"'{c}'" for c in DECISIVE),
        ties=", ".join(f"'{c}'" for c in TIES),
    )
    return sql, (*params, *params)


def _pair_records(project: Project, filters: VoteFilter) -> list[tuple[str, str, str, int]]:
    if filters.labels == "judge":
        return []  # judge verdicts only: no votes (project_votes is empty)
    sql, params = pair_counts_sql(project, filters)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Aggregates over up to millions of rows: JIT compilation costs more than it saves (0.4 s
            # measured at 1M votes), and the default 4 MB of work_mem can push a grouping to disk.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(sql, params)
        return [(a, b, outcome, n) for a, b, outcome, n in cursor.fetchall()]


def _ranked_records(votes: QuerySet[Vote], *, exclude_ties: bool = False) -> list[tuple[str, str, str, int]]:
    rankings = Counter(
        (tuple(r or ()), tuple(tuple(g) for g in t or ()))
        for r, t in votes.filter(choice=Vote.Choice.RANKED).values_list("ranking", "ranking_ties")
    )
    if not rankings:
        return []
    names = _model_names({c for ranking, _ in rankings for c in ranking})
    records = []
    for (ranking, ties), n in rankings.items():
        groups = [list(g) for g in ties]
        records += [(names[w], names[l], "a", n) for w, l in pair_votes_from_ranking(list(ranking), groups)]
        if not exclude_ties:  # a tie within a ranking counts like a pairwise tie
            records += [(names[x], names[y], "tie", n) for x, y in tied_pairs_from_ranking(list(ranking), groups)]
    return records


def _model_names(completion_ids) -> dict[int, str]:
    return dict(Completion.objects.filter(pk__in=list(completion_ids)).values_list("id", "model_name"))


def _battle_rows(project: Project, filters: VoteFilter) -> Iterator[tuple[int, int, float]]:
    """(completion shown as A, completion shown as B, score of A) per battle, in the order cast."""
    rows = (
        project_votes(project, filters)
        .order_by("created_at", "id")
        .values_list("choice", "shown_order", "ranking", "ranking_ties")
    )
    score: dict[str, float] = {Vote.Choice.A: 1.0, Vote.Choice.B: 0.0, Vote.Choice.TIE: 0.5, Vote.Choice.BOTH_BAD: 0.5}
    for choice, shown, ranking, ties in rows.iterator(chunk_size=5000):
        if choice == Vote.Choice.RANKED:
            # Tied completions share the place of the group's first member: a tie scores 0.5.
            place = {c: k for k, c in enumerate(ranking or ())}
            for group in ties or ():
                for c in group:
                    place[c] = min(place[m] for m in group)
            for x in range(len(shown)):
                for y in range(x + 1, len(shown)):
                    px, py = place[shown[x]], place[shown[y]]
                    yield shown[x], shown[y], 1.0 if px < py else 0.0 if px > py else 0.5
        else:
            yield shown[0], shown[1], score[choice]
    if filters.labels != "human":
        from judging.leaderboard import judge_battle_rows

        yield from judge_battle_rows(project, **_judge_args(project, filters))


def project_ordered_battles(project: Project, filters: VoteFilter) -> list[tuple[str, str, str]]:
    """(model_a, model_b, outcome) in the order votes were cast: the input of online Elo."""
    battles = list(_battle_rows(project, filters))
    names = _model_names({c for a, b, _ in battles for c in (a, b)})
    outcome = {1.0: "a", 0.0: "b", 0.5: "tie"}
    return [(names[a], names[b], outcome[s]) for a, b, s in battles]


def project_style_battles(project: Project, filters: VoteFilter) -> tuple[StyleBattles, int]:
    """Per-battle rows with style counts measured on the completions' texts (sides as shown).
    Battles with a side whose text we do not have are left out; returns how many."""
    battles = list(_battle_rows(project, filters))
    ids = {c for a, b, _ in battles for c in (a, b)}
    completions = {
        pk: (name, text_style(text))
        for pk, name, text in Completion.objects.filter(pk__in=list(ids), text_available=True).values_list(
            "id", "model_name", "text"
        )
    }
    kept = [(a, b, s) for a, b, s in battles if a in completions and b in completions]
    models = sorted({completions[c][0] for a, b, _ in kept for c in (a, b)})
    index = {m: k for k, m in enumerate(models)}
    return (
        StyleBattles(
            models=tuple(models),
            model_a=np.array([index[completions[a][0]] for a, _, _ in kept], dtype=np.int64),
            model_b=np.array([index[completions[b][0]] for _, b, _ in kept], dtype=np.int64),
            y=np.array([s for _, _, s in kept], dtype=np.float64),
            style_a=np.array([completions[a][1] for a, _, _ in kept], dtype=np.float64).reshape(-1, 4),
            style_b=np.array([completions[b][1] for _, b, _ in kept], dtype=np.float64).reshape(-1, 4),
        ),
        len(battles) - len(kept),
    )


def project_leaderboard(
    project: Project,
    *,
    filters: VoteFilter = VoteFilter(),
    options: LeaderboardOptions = LeaderboardOptions(),
    progress: Callable[[int], None] | None = None,
) -> LeaderboardResult:
    """The leaderboard of a project's votes: what the command, the API and the dashboard show."""
    filters = VoteFilter(**{**filters.__dict__, "exclude_ties": options.exclude_ties})
    source = filters.describe(project)
    style = None
    counts = project_pair_counts(project, filters)
    if options.style_control:
        style, skipped = project_style_battles(project, filters)
        source["style_battles_without_text"] = skipped
        # Rate only what style control can see: the battles whose two texts we have.
        counts = PairCounts.from_arrays(
            style.model_a, style.model_b, np.round(2 - 2 * style.y).astype(int), list(style.models)
        )
    ordered = project_ordered_battles(project, filters) if options.online_elo else None
    return compute_leaderboard(
        counts, options=options, ordered_battles=ordered, style_battles=style, source=source, progress=progress
    )
