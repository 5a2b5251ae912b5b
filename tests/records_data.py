"""A small project with known agreement for the record browser's tests (synthetic, not HH-RLHF).

Four comparisons of two models; human votes by alice and bob through the real services, one
imported vote written as an import writes it:
  c0: alice and bob pick "sun-model"          -> unanimous
  c1: alice picks sun-model, bob moon-model   -> split
  c2: alice: tie                              -> single (alice)
  c3: imported voter "prd:1" picks moon-model, text mentions photosynthesis -> single (imported)
A gold comparison (c4) has no votes.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotate.models import Comparison, ComparisonItem, Completion, Project, Prompt, User, Vote
from annotate.services.assignment import next_comparison
from annotate.services.corrections import skip_assignment
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_project, make_user

QUESTIONS = [
    "Why is the sky blue?",
    "How do tides work?",
    "What is a prime number?",
    "How do plants make food from light?",
    "What is 2 + 2?",
]
ANSWERS = {
    "sun-model": [
        "Rayleigh scattering: **short** wavelengths scatter more.",
        "The moon's gravity pulls the oceans.",
        "A number with exactly two divisors.",
        "Photosynthesis turns light, water and CO2 into sugar.",
        "4",
    ],
    "moon-model": [
        "Because it reflects the ocean.",
        "Wind pushes the water.",
        "Any odd number.",
        "They absorb food from the soil.",
        "5",
    ],
}


@dataclass
class RecordsData:
    project: Project
    alice: User
    bob: User
    researcher: User
    comparisons: list[Comparison]
    winners: dict[int, int]  # comparison id -> completion id of sun-model


def _comparison(project: Project, i: int) -> Comparison:
    prompt = Prompt.objects.create(project=project, key=f"q{i}", text=QUESTIONS[i])
    completions = [
        Completion.objects.create(prompt=prompt, key=f"{m}-{i}", model_name=m, text=ANSWERS[m][i])
        for m in ("sun-model", "moon-model")
    ]
    comparison = Comparison.objects.create(project=project, prompt=prompt, key="-".join(str(c.pk) for c in completions))
    ComparisonItem.objects.bulk_create(
        ComparisonItem(comparison=comparison, completion=c, position=p) for p, c in enumerate(completions)
    )
    return comparison


def _side(assignment, completion_id: int) -> str:
    return "a" if assignment.shown_order[0] == completion_id else "b"


def _vote_as(user: User, project: Project, plan: dict[int, tuple[str, int | None, str]]) -> None:
    """Vote on the comparisons in `plan` (comparison id -> (choice, winner id, rationale)); skip the rest."""
    left = set(plan)
    while left:
        assignment = next_comparison(annotator=user, project=project).assignment
        if assignment is None:
            raise AssertionError(f"{user} ran out of work with {left} left")
        if assignment.comparison_id not in plan:
            skip_assignment(annotator=user, assignment_id=assignment.pk)
            continue
        choice, winner, rationale = plan[assignment.comparison_id]
        side = _side(assignment, winner) if winner else choice
        record_vote(
            annotator=user,
            assignment_id=assignment.pk,
            idempotency_key=f"rec-{assignment.pk}",
            votes=[VoteInput(choice=side, rationale=rationale)],
        )
        left.discard(assignment.comparison_id)


def make_records_data(name: str = "Records") -> RecordsData:
    alice, bob, researcher = (
        make_user(f"alice-{name}"),
        make_user(f"bob-{name}"),
        make_user(f"res-{name}", role="researcher"),
    )
    project = make_project(name=name, annotators=[alice, bob], researchers=[researcher], overlap_target=3)
    comparisons = [_comparison(project, i) for i in range(5)]
    c0, c1, c2, c3, c4 = comparisons
    sun = {c.pk: c.items.get(position=0).completion_id for c in comparisons}
    moon = {c.pk: c.items.get(position=1).completion_id for c in comparisons}
    Comparison.objects.filter(pk=c4.pk).update(gold_label="winner", gold_winner_id=sun[c4.pk])
    _vote_as(
        alice,
        project,
        {
            c0.pk: ("", sun[c0.pk], "clearly <b>right</b>"),
            c1.pk: ("", sun[c1.pk], ""),
            c2.pk: ("tie", None, "both fine"),
        },
    )
    _vote_as(bob, project, {c0.pk: ("", sun[c0.pk], ""), c1.pk: ("", moon[c1.pk], "the wind one")})
    Vote.objects.create(
        comparison=c3,
        external_annotator="prd:1",
        source=Vote.Source.IMPORTED,
        choice="b",
        shown_order=[sun[c3.pk], moon[c3.pk]],
        winner_id=moon[c3.pk],
        loser_id=sun[c3.pk],
    )
    Comparison.objects.filter(pk=c3.pk).update(imported_votes=1)
    return RecordsData(project, alice, bob, researcher, comparisons, sun)
