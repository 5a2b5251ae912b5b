"""Judge verdicts as export rows (source "ai"), beside the human rows: `--source ai|all` on the export.

A preference row per verdict (the newest per comparison and aspect, of the project's judge when it
names one), in the schema of the human rows: response_a is the lower completion id, label a/b/tie,
votes 0 (no person voted), agreement = the judge's averaged probability of its label, annotators
[the judge], source "ai". A raw row per verdict likewise, with shown = [first, second] (order 1).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace

from annotate.models import Project
from judging.models import JudgeSettings, JudgeVerdict

AI = "ai"
HUMAN_SOURCES = ("human", "imported")


def sources_for(value: str) -> tuple[str, ...]:
    """The vote sources of an export's --source value: human | imported | humans (both) | ai | all."""
    return {"humans": HUMAN_SOURCES, "all": (*HUMAN_SOURCES, AI)}.get(value, (value,))


def with_ai_rows(iterate: Callable, project: Project, filters, *args) -> Iterator[dict]:
    """The human rows of `iterate` for the human sources in filters.sources, then the AI rows."""
    people = tuple(s for s in filters.sources if s != AI)
    if people:
        yield from iterate(project, replace(filters, sources=people), *args)
    options = args[0] if len(args) == 2 else None
    stats = args[-1] if args else None
    yield from (
        ai_preference_rows(project, filters, options, stats)
        if options is not None
        else ai_vote_rows(project, filters, stats)
    )


def _verdicts(project: Project, filters):
    qs = JudgeVerdict.objects.filter(comparison__project=project, comparison__gold_label="")
    judge_id = JudgeSettings.objects.filter(project=project).values_list("judge_id", flat=True).first()
    if judge_id:
        qs = qs.filter(judge_id=judge_id)
    if filters.rounds is not None:
        qs = qs.filter(comparison__round__in=filters.rounds)
    if filters.aspect:
        qs = qs.filter(aspect=filters.aspect)
    if filters.comparisons is not None:  # the record browser's filter
        qs = qs.filter(comparison_id__in=filters.comparisons)
    if filters.since:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__lt=filters.until)
    newest: dict[tuple[int, str], JudgeVerdict] = {}
    for verdict in (
        qs.select_related("comparison__prompt", "first", "second")
        .order_by("created_at", "pk")
        .iterator(chunk_size=2000)
    ):
        newest[(verdict.comparison_id, verdict.aspect)] = verdict
    return [newest[key] for key in sorted(newest)]


def ai_preference_rows(project: Project, filters, options, stats=None) -> Iterator[dict]:
    from annotate.export.rows import SCHEMA_VERSION, _prompt_value, _provenance, _response_value

    for v in _verdicts(project, filters):
        a, b = sorted((v.first, v.second), key=lambda c: c.pk)
        if not (a.text_available and b.text_available):
            continue
        label = "tie" if v.verdict == "tie" else ("a" if v.winner_id == a.pk else "b")
        if label == "tie" and options.ties == "drop":
            continue
        prompt = v.comparison.prompt
        prompt_value = _prompt_value({"text": prompt.text, "metadata": prompt.metadata}, options.conversational)
        text = {
            "a": _response_value(a.text, options.conversational),
            "b": _response_value(b.text, options.conversational),
        }
        base = {
            "schema_version": SCHEMA_VERSION,
            "pair_id": f"{v.comparison_id}:{a.pk}-{b.pk}:{v.aspect}:ai",
            "comparison_id": v.comparison_id,
            "prompt_id": prompt.pk,
            "round": v.comparison.round,
            "aspect": v.aspect,
            "category": prompt.category,
            "prompt": prompt_value,
            "response_a": text["a"],
            "response_b": text["b"],
            "label": label,
            "votes": 0,
            "votes_a": 0,
            "votes_b": 0,
            "votes_tie": 0,
            "votes_both_bad": 0,
            "agreement": v.probabilities.get({"first": "first", "second": "second"}.get(v.verdict, "tie")),
            "strength": None,
            "margin": 0.0,
            "rationales": [],
            "annotators": [v.judge_label],
            "provenance_a": _provenance(_completion(a)),
            "provenance_b": _provenance(_completion(b)),
            "source": AI,
        }
        if stats is not None:
            stats.rows += 1
            stats.labels[label] += 1
        if label == "tie":
            if options.ties == "both-orders":
                yield {**base, "chosen": text["a"], "rejected": text["b"], "chosen_side": "a"}
                yield {**base, "chosen": text["b"], "rejected": text["a"], "chosen_side": "b"}
                continue
            yield {**base, "chosen": None, "rejected": None, "chosen_side": None}
        else:
            other = "b" if label == "a" else "a"
            yield {**base, "chosen": text[label], "rejected": text[other], "chosen_side": label}


def _completion(c) -> dict:
    return {
        "model_name": c.model_name,
        "source": c.source,
        "policy_checkpoint_id": c.policy_checkpoint_id,
        "round": c.round,
        "sampler_params": json.dumps(c.sampler_params or {}),
        "seed": c.seed,
    }


def ai_vote_rows(project: Project, filters, stats=None) -> Iterator[dict]:
    from annotate.export.vote_rows import RAW_SCHEMA_VERSION

    for v in _verdicts(project, filters):
        if stats is not None:
            stats.rows += 1
        yield {
            "schema_version": RAW_SCHEMA_VERSION,
            "vote_id": None,
            "comparison_id": v.comparison_id,
            "prompt_id": v.comparison.prompt_id,
            "round": v.comparison.round,
            "aspect": v.aspect,
            "annotator": v.judge_label,
            "source": AI,
            "choice": {"first": "a", "second": "b"}.get(v.verdict, "tie"),
            "ranking": None,
            "ranking_ties": None,
            "strength": None,
            "rationale": "",
            "shown": [v.first_id, v.second_id],
            "shown_models": [v.first.model_name, v.second.model_name],
            "winner_id": v.winner_id,
            "loser_id": v.loser_id,
            "winner_position": {"first": "left", "second": "right"}.get(v.verdict),
            "time_spent_ms": None,
            "created_at": v.created_at.isoformat(),
        }
