"""Uses of judge labels: the triage pairing step and judge labels mixed into a round's DPO pairs."""

from __future__ import annotations

import pytest

from annotate.models import Comparison
from judging.uses import DISAGREEMENT_BOOST, SKIP_PRIORITY, triage_round, with_judge_examples
from rewards.models import RewardModel
from tests.factories import make_comparisons, make_project, make_user
from tests.judging.helpers import human_vote, judge_verdict, sides
from training.errors import InvalidRoundParams
from training.models import AIFeedback, Round

pytestmark = pytest.mark.django_db


def _in_round(project, count: int, number: int = 1) -> list[Comparison]:
    comparisons = make_comparisons(project, count)
    Comparison.objects.filter(pk__in=[c.pk for c in comparisons]).update(round=number, priority=101)
    for c in comparisons:
        c.refresh_from_db()
    return comparisons


def test_triage_skips_confident_agreement_and_puts_disagreement_first():
    project = make_project()
    rm = RewardModel.objects.create(project=project, version=1, base_model="tiny", status="ready", artifact_path="/rm")
    c0, c1, c2, c3, c4 = _in_round(project, 5)
    cases = [  # (comparison, judge verdict, judge P(verdict), RM picks first?, RM probability)
        (c0, "first", 0.9, True, 0.95),
        (c1, "first", 0.9, False, 0.9),
        (c2, "first", 0.9, True, 0.6),
        (c3, "tie", 0.8, True, 0.99),
    ]
    for c, verdict, p, rm_first, rm_p in cases:
        judge_verdict(
            c,
            None,
            verdict,
            "AB" if verdict == "first" else "AA",
            consistent=verdict != "tie",
            probabilities={verdict: p},
        )
        first, second = sides(c)
        winner, loser = (first, second) if rm_first else (second, first)
        AIFeedback.objects.create(
            comparison=c, reward_model=rm, winner_id=winner, loser_id=loser, margin=1.0, probability=rm_p
        )
    counts = triage_round(project=project, round_number=1, confidence=0.85)
    assert counts == {"skip": 1, "first": 1, "keep": 2}  # c4 has no verdict: untouched, not counted
    priorities = dict(Comparison.objects.values_list("pk", "priority"))
    assert priorities == {c0.pk: SKIP_PRIORITY, c1.pk: 101 + DISAGREEMENT_BOOST, c2.pk: 101, c3.pk: 101, c4.pk: 101}
    with pytest.raises(ValueError, match="confidence"):
        triage_round(project=project, round_number=1, confidence=0.3)


def test_round_mixes_judge_labels_into_its_pairs_and_records_the_mix():
    project = make_project()
    person = make_user()
    c0, c1, c2 = _in_round(project, 3)
    human_vote(c0, person, "first")
    judge_verdict(c0, None, "second", "BA", probabilities={"second": 0.95})  # a person labelled it: not added
    judge_verdict(c1, None, "second", "BA", probabilities={"second": 0.9})
    judge_verdict(c2, None, "first", "AB", probabilities={"first": 0.7})  # below min_probability
    from training.models import Policy

    policy = Policy.objects.create(project=project, version=1, method="base", status="ready", artifact_path="/p")
    round_ = Round.objects.create(project=project, number=1, method="dpo", policy=policy)
    assert with_judge_examples(round_, ["human pair"], {}) == (["human pair"], {})
    examples, mix = with_judge_examples(round_, ["human pair"], {"min_probability": 0.8})
    assert len(examples) == 2 and examples[0] == "human pair"
    first, second = (c1.items.get(position=p).completion for p in (0, 1))
    assert (examples[1].chosen, examples[1].rejected) == (second.text, first.text)
    assert mix == {
        "judge_labels": {
            "human_pairs": 1,
            "judge_pairs": 1,
            "min_probability": 0.8,
            "judge": "judge",
            "prompt_versions": ["v1"],
        }
    }
    with pytest.raises(InvalidRoundParams, match="judge_labels.min_probability"):
        with_judge_examples(round_, [], {"min_probability": 2})
    with pytest.raises(InvalidRoundParams, match="judge_labels.share"):
        with_judge_examples(round_, [], {"share": 1})
