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
from django.db.models import Count, F, FilteredRelation, Q, QuerySet

from annotate.export.aggregate import pair_votes_from_ranking, tied_pairs_from_ranking
from annotate.leaderboard.compute import LeaderboardOptions, LeaderboardResult, compute_leaderboard
from annotate.leaderboard.counts import PairCounts
from annotate.leaderboard.style import StyleBattles, text_style
from annotate.models import Completion, Project, Vote

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
        comparison__project=project, comparison__gold_label="",
        aspect=filters.aspect or project.aspect_names[0], source__in=filters.sources,
    )
    if filters.rounds:
        votes = votes.filter(comparison__round__in=filters.rounds)
    if filters.exclude_ties:
        votes = votes.exclude(choice__in=TIES)
    return votes.none() if filters.labels == "judge" else votes


def _judge_args(project: Project, filters: VoteFilter) -> dict:
    return {"aspect": filters.aspect or project.aspect_names[0], "rounds": filters.rounds, "exclude_ties": filters.exclude_ties}


def _with_sides(votes: QuerySet[Vote]) -> QuerySet[Vote]:
    # The comparison's first two completions (canonical order): who took part in a tie.
    return votes.annotate(
        first=FilteredRelation("comparison__items", condition=Q(comparison__items__position=0)),
        second=FilteredRelation("comparison__items", condition=Q(comparison__items__position=1)),
    )


def project_pair_counts(project: Project, filters: VoteFilter = VoteFilter()) -> PairCounts:
    """Battle counts per model pair and outcome, grouped in the database."""
    votes = project_votes(project, filters)
    records: list[tuple[str, str, str, int]] = [
        (row["winner__model_name"], row["loser__model_name"], "a", row["n"])
        for row in votes.filter(choice__in=(Vote.Choice.A, Vote.Choice.B))
        .values("winner__model_name", "loser__model_name").annotate(n=Count("id")).order_by()
    ]
    if not filters.exclude_ties:
        records += [
            (row["model_a"], row["model_b"], row["choice"], row["n"])
            for row in _with_sides(votes.filter(choice__in=TIES))
            .values("choice", model_a=F("first__completion__model_name"), model_b=F("second__completion__model_name"))
            .annotate(n=Count("id")).order_by()
        ]
    records += _ranked_records(votes, exclude_ties=filters.exclude_ties)
    if filters.labels != "human":
        from judging.leaderboard import judge_pair_records

        records += judge_pair_records(project, **_judge_args(project, filters))
    return PairCounts.from_records(records)


def _ranked_records(votes: QuerySet[Vote], *, exclude_ties: bool = False) -> list[tuple[str, str, str, int]]:
    rankings = Counter(
        (tuple(r), tuple(tuple(g) for g in t or ()))
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
    rows = project_votes(project, filters).order_by("created_at", "id").values_list("choice", "shown_order", "ranking", "ranking_ties")
    score = {Vote.Choice.A: 1.0, Vote.Choice.B: 0.0, Vote.Choice.TIE: 0.5, Vote.Choice.BOTH_BAD: 0.5}
    for choice, shown, ranking, ties in rows.iterator(chunk_size=5000):
        if choice == Vote.Choice.RANKED:
            # Tied completions share the place of the group's first member: a tie scores 0.5.
            place = {c: k for k, c in enumerate(ranking)}
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
        for pk, name, text in Completion.objects.filter(pk__in=list(ids), text_available=True).values_list("id", "model_name", "text")
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
    project: Project, *, filters: VoteFilter = VoteFilter(), options: LeaderboardOptions = LeaderboardOptions(),
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
        counts = PairCounts.from_arrays(style.model_a, style.model_b, np.round(2 - 2 * style.y).astype(int), list(style.models))
    ordered = project_ordered_battles(project, filters) if options.online_elo else None
    return compute_leaderboard(counts, options=options, ordered_battles=ordered, style_battles=style, source=source, progress=progress)
