"""Judge verdicts as leaderboard battles (the toggle human only / judge only / both): one battle per
comparison, aspect and judge verdict; an inconsistent verdict is a tie, like the judge reported it."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, F

from annotate.models import Project
from judging.models import JudgeSettings, JudgeVerdict

LABELS = ("human", "judge", "both")


def _verdicts(project: Project, *, aspect: str, rounds: tuple[int, ...] | None):
    qs = JudgeVerdict.objects.filter(comparison__project=project, comparison__gold_label="", aspect=aspect)
    judge_id = JudgeSettings.objects.filter(project=project).values_list("judge_id", flat=True).first()
    if judge_id:
        qs = qs.filter(judge_id=judge_id)
    if rounds:
        qs = qs.filter(comparison__round__in=rounds)
    return qs


def judge_pair_records(
    project: Project, *, aspect: str, rounds=None, exclude_ties: bool = False
) -> list[tuple[str, str, str, int]]:
    """(model a, model b, outcome "a" | "tie", count): decisive verdicts as winner-first records, grouped in SQL."""
    qs = _verdicts(project, aspect=aspect, rounds=rounds)
    rows = (
        qs.values("verdict", m1=F("first__model_name"), m2=F("second__model_name")).annotate(n=Count("id")).order_by()
    )
    out = []
    for row in rows:
        if row["verdict"] == "first":
            out.append((row["m1"], row["m2"], "a", row["n"]))
        elif row["verdict"] == "second":
            out.append((row["m2"], row["m1"], "a", row["n"]))
        elif not exclude_ties:
            out.append((row["m1"], row["m2"], "tie", row["n"]))
    return out


def judge_battle_rows(
    project: Project, *, aspect: str, rounds=None, exclude_ties: bool = False
) -> Iterator[tuple[int, int, float]]:
    """(first completion, second completion, score of the first) per verdict, in the order judged."""
    score = {"first": 1.0, "second": 0.0, "tie": 0.5}
    qs = _verdicts(project, aspect=aspect, rounds=rounds)
    if exclude_ties:
        qs = qs.exclude(verdict="tie")
    for first, second, verdict in (
        qs.order_by("created_at", "id").values_list("first_id", "second_id", "verdict").iterator(chunk_size=5000)
    ):
        yield first, second, score[verdict]
