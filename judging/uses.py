"""Uses of the judge's labels: a triage pairing step, and judge labels mixed into a round's DPO pairs (RLAIF).

Triage (`triage_round`): on a round's comparisons with both a judge verdict and the reward model's
AI feedback, a pair where both pick the same winner with probability ≥ `confidence` goes to the
back of the queue (priority −1000: people label it last, if at all); a pair where they pick
different winners goes to the front (priority + 1000: people see the disagreements first).

Mix (`with_judge_examples`): a round's DPO examples are its human-labelled pairs; with round
parameter judge_labels = {"min_probability": p, "max_pairs": n} the judge's consistent verdicts
(averaged probability ≥ p) on the round's comparisons that no person labelled are added, and the
mix goes into the policy's lineage (policy.data["judge_labels"]).
"""

from __future__ import annotations

from annotate.models import Comparison, Completion, Vote
from judging.models import JudgeVerdict
from judging.selectors import latest_verdicts
from judging.services import settings_for

SKIP_PRIORITY = -1000
DISAGREEMENT_BOOST = 1000


def triage_decision(judge: JudgeVerdict, rm_winner_id: int, rm_probability: float, *, confidence: float) -> str:
    """ "skip" (judge and reward model agree, both confident), "first" (they disagree) or "keep"."""
    if judge.verdict == "tie" or not judge.consistent:
        return "keep"
    judge_probability = judge.probabilities.get(judge.verdict, 0.0)
    if judge.winner_id != rm_winner_id:
        return "first"
    return "skip" if judge_probability >= confidence and rm_probability >= confidence else "keep"


def triage_round(*, project, round_number: int, confidence: float = 0.8) -> dict:
    """Reorder a round's open comparisons by judge / reward-model agreement; returns the counts."""
    from training.models import AIFeedback

    if not 0.5 <= confidence <= 1:
        raise ValueError("confidence: must be between 0.5 and 1")
    aspect = project.aspect_names[0]
    settings = settings_for(project)
    verdicts = {c: v for (c, a), v in latest_verdicts(project, judge_id=settings.judge_id).items() if a == aspect}
    comparisons = Comparison.objects.filter(
        project=project, round=round_number, is_complete=False, gold_label="", pk__in=list(verdicts)
    )
    feedback = {
        f.comparison_id: f for f in AIFeedback.objects.filter(comparison__in=comparisons).order_by("created_at")
    }
    counts = {"skip": 0, "first": 0, "keep": 0}
    for comparison in comparisons:
        rm = feedback.get(comparison.pk)
        decision = (
            "keep"
            if rm is None
            else triage_decision(verdicts[comparison.pk], rm.winner_id, rm.probability, confidence=confidence)
        )
        counts[decision] += 1
        if decision == "skip":
            Comparison.objects.filter(pk=comparison.pk).update(priority=SKIP_PRIORITY)
        elif decision == "first":
            Comparison.objects.filter(pk=comparison.pk).update(priority=comparison.priority + DISAGREEMENT_BOOST)
    return counts


def check_mix_options(options: dict) -> tuple[float, int]:
    """(min_probability, max_pairs) of round parameter judge_labels; an error naming the field otherwise."""
    from prefloop.limits import OutOfBounds, check_whole_number, limit
    from training.errors import InvalidRoundParams

    unknown = set(options) - {"min_probability", "max_pairs"}
    if unknown:
        raise InvalidRoundParams(f"judge_labels.{min(unknown)}: unknown field (min_probability, max_pairs)")
    value = options.get("min_probability", 0.8)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.5 <= value <= 1:
        raise InvalidRoundParams("judge_labels.min_probability: must be a number between 0.5 and 1")
    try:
        pairs = check_whole_number(
            "judge_labels.max_pairs", options.get("max_pairs", 10_000), high=limit("judge.comparisons", 100_000)
        )
    except OutOfBounds as exc:
        raise InvalidRoundParams(str(exc)) from None
    return float(value), pairs


def with_judge_examples(round_, examples: list, options: dict) -> tuple[list, dict]:
    """(examples + judge examples, the mix for the lineage); options {} leaves the examples as they are."""
    if not options:
        return examples, {}
    from training.ml.data import PreferenceExample

    min_probability, max_pairs = check_mix_options(options)
    project = round_.project
    aspect = project.aspect_names[0]
    voted = set(
        Vote.objects.filter(comparison__project=project, comparison__round=round_.number, aspect=aspect).values_list(
            "comparison_id", flat=True
        )
    )
    judge_id = settings_for(project).judge_id
    chosen = []
    for (comparison_id, verdict_aspect), v in sorted(latest_verdicts(project, judge_id=judge_id).items()):
        if (
            verdict_aspect != aspect
            or v.comparison.round != round_.number
            or comparison_id in voted
            or v.verdict == "tie"
            or not v.consistent
            or v.probabilities.get(v.verdict, 0) < min_probability
        ):
            continue
        chosen.append(v)
    chosen = chosen[:max_pairs]
    from annotate.selectors import conversations_by_id

    prompts = conversations_by_id(project, [v.comparison.prompt_id for v in chosen])
    texts = dict(
        Completion.objects.filter(pk__in=[c for v in chosen for c in (v.first_id, v.second_id)]).values_list(
            "id", "text"
        )
    )
    extra = [
        PreferenceExample(prompt=prompts[v.comparison.prompt_id], chosen=texts[v.winner_id], rejected=texts[v.loser_id])
        for v in chosen
        if v.winner_id is not None and v.loser_id is not None
    ]  # consistent wins only (filtered above)
    mix = {
        "judge_labels": {
            "human_pairs": len(examples),
            "judge_pairs": len(extra),
            "min_probability": min_probability,
            "judge": chosen[0].judge_label if chosen else None,
            "prompt_versions": sorted({v.prompt_version for v in chosen}),
        }
    }
    return examples + extra, mix
