"""Read-side queries of the judging app: verdicts, and judge–human agreement per aspect and category."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from annotate.models import Project, Vote
from judging.agreement import agreement_row
from judging.models import JudgeSettings, JudgeVerdict

HUMAN_SOURCES = (Vote.Source.HUMAN, Vote.Source.IMPORTED)


def latest_verdicts(project: Project, *, judge_id: int | None = None) -> dict[tuple[int, str], JudgeVerdict]:
    """(comparison id, aspect) → the newest verdict (of `judge_id` when given)."""
    qs = JudgeVerdict.objects.filter(comparison__project=project, comparison__gold_label="")
    if judge_id is not None:
        qs = qs.filter(judge_id=judge_id)
    out: dict[tuple[int, str], JudgeVerdict] = {}
    for verdict in qs.select_related("comparison__prompt").order_by("created_at", "pk"):
        out[(verdict.comparison_id, verdict.aspect)] = verdict
    return out


def human_label(vote: dict, first_id: int, second_id: int) -> str | None:
    if vote["choice"] in ("tie", "both_bad"):
        return "tie"
    return {first_id: "first", second_id: "second"}.get(vote["winner_id"])


def judge_agreement(project: Project) -> dict:
    """Agreement of the project's judge (else every judge's newest verdicts) with the human votes, overall,
    per aspect and per category; only comparisons with both a verdict and at least one human vote count."""
    settings = JudgeSettings.objects.filter(project=project).select_related("judge").first()
    judge_id = settings.judge_id if settings and settings.judge_id else None
    verdicts = latest_verdicts(project, judge_id=judge_id)
    votes = (
        Vote.objects.filter(comparison_id__in={c for c, _ in verdicts}, source__in=HUMAN_SOURCES)
        .exclude(choice="ranked")
        .values("comparison_id", "aspect", "choice", "winner_id")
    )
    humans: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for vote in votes:
        humans[(vote["comparison_id"], vote["aspect"])].append(vote)
    groups: dict[str, dict[str, list[dict]]] = {
        "overall": defaultdict(list),
        "aspect": defaultdict(list),
        "category": defaultdict(list),
    }
    for key, verdict in verdicts.items():
        labels = [label for v in humans.get(key, []) if (label := human_label(v, verdict.first_id, verdict.second_id))]
        if not labels:
            continue
        item = {
            "judge": verdict.verdict,
            "consistent": verdict.consistent,
            "order1": verdict.order1,
            "order2": verdict.order2,
            "humans": labels,
        }
        groups["overall"]["all"].append(item)
        groups["aspect"][verdict.aspect].append(item)
        groups["category"][verdict.comparison.prompt.category or "(none)"].append(item)
    report = {
        kind: [agreement_row(name, items).as_dict() for name, items in sorted(rows.items())]
        for kind, rows in groups.items()
    }
    return {"judge": settings.judge.label if settings and settings.judge else None, "verdicts": len(verdicts), **report}
