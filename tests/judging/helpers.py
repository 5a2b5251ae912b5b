"""Rows for the judging tests: human votes and judge verdicts written as the app writes them."""

from __future__ import annotations

from annotate.models import Comparison, Vote
from judging.models import JudgeVerdict

PICKS = {"A": (0.8, 0.1, 0.1), "B": (0.1, 0.8, 0.1), "C": (0.1, 0.1, 0.8)}


def sides(comparison: Comparison) -> tuple[int, int]:
    items = list(comparison.items.order_by("position").values_list("completion_id", flat=True))
    return items[0], items[1]


def human_vote(comparison: Comparison, user, label: str, *, aspect: str = "overall") -> Vote:
    """label: first / second / tie — shown in the comparison's own order."""
    first, second = sides(comparison)
    winner, loser = {"first": (first, second), "second": (second, first)}.get(label, (None, None))
    choice = {"first": "a", "second": "b", "tie": "tie"}[label]
    return Vote.objects.create(
        comparison=comparison,
        annotator=user,
        aspect=aspect,
        choice=choice,
        shown_order=[first, second],
        winner_id=winner,
        loser_id=loser,
    )


def judge_verdict(
    comparison: Comparison,
    judge,
    verdict: str,
    picks: str,
    *,
    consistent: bool = True,
    aspect: str = "overall",
    probabilities: dict | None = None,
) -> JudgeVerdict:
    """picks: the letters of order 1 and order 2, e.g. "AB" (both orders chose the first answer)."""
    first, second = sides(comparison)
    return JudgeVerdict.objects.create(
        comparison=comparison,
        aspect=aspect,
        judge=judge,
        judge_label=judge.label if judge else "judge",
        prompt_version="v1",
        first_id=first,
        second_id=second,
        verdict=verdict,
        consistent=consistent,
        order1=list(PICKS[picks[0]]),
        order2=list(PICKS[picks[1]]),
        probabilities=probabilities or {},
    )
