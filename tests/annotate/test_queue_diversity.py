"""Queue diversity: an annotator never gets a third comparison of one prompt in a row while another
prompt has work (both engines: the ORM path on SQLite, the prepared statements on PostgreSQL)."""

from __future__ import annotations

import itertools
import uuid

import pytest

from annotate.models import Comparison, ComparisonItem, Completion, Prompt
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db

_n = itertools.count()


def round_of_one_prompt(project, *, answers: int) -> Prompt:
    """One prompt with `answers` completions and every pair of them as a comparison (K=4 → 6 pairs)."""
    n = next(_n)
    prompt = Prompt.objects.create(project=project, key=f"div{n}", text=f"Question {n}?")
    completions = [
        Completion.objects.create(prompt=prompt, key=f"c{n}-{i}", model_name=f"m{i}", text=f"Answer {i}.")
        for i in range(answers)
    ]
    for a, b in itertools.combinations(completions, 2):
        comparison = Comparison.objects.create(project=project, prompt=prompt, key=f"{a.pk}-{b.pk}")
        ComparisonItem.objects.bulk_create(
            [
                ComparisonItem(comparison=comparison, completion=a, position=0),
                ComparisonItem(comparison=comparison, completion=b, position=1),
            ]
        )
    return prompt


def vote_through(annotator, project, count: int) -> list[int]:
    """Take and answer `count` comparisons in order; the prompt id of each."""
    prompts = []
    for _ in range(count):
        result = next_comparison(annotator=annotator, project=project)
        assert result.assignment is not None, result.reason
        prompts.append(result.assignment.comparison.prompt_id)
        record_vote(
            annotator=annotator,
            assignment_id=result.assignment.pk,
            votes=[VoteInput(choice="a")],
            idempotency_key=str(uuid.uuid4()),
        )
    return prompts


def longest_run(values: list[int]) -> int:
    return max(len(list(group)) for _, group in itertools.groupby(values))


def test_an_annotator_never_gets_one_prompt_three_times_in_a_row_while_others_have_work():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    first = round_of_one_prompt(project, answers=4)  # 6 pairs, created first: the plain order gives them back to back
    second = round_of_one_prompt(project, answers=4)
    prompts = vote_through(annotator, project, 12)
    f, s = first.pk, second.pk
    # Runs of two while both have work; once the first prompt is done, the second is all there is.
    assert prompts == [f, f, s, f, f, s, f, f, s, s, s, s]
    assert longest_run(prompts[:9]) == 2


def test_when_only_one_prompt_has_work_it_keeps_coming():
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    only = round_of_one_prompt(project, answers=4)
    assert vote_through(annotator, project, 6) == [only.pk] * 6
    assert next_comparison(annotator=annotator, project=project).reason == "complete"


def test_diversity_counts_the_lease_on_screen_too():
    """Prefetch: the UI asks for the next comparison while one is still leased on screen."""
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    first = round_of_one_prompt(project, answers=3)
    second = round_of_one_prompt(project, answers=3)
    a = next_comparison(annotator=annotator, project=project).assignment
    b = next_comparison(annotator=annotator, project=project, exclude_assignments=[a.pk]).assignment
    c = next_comparison(annotator=annotator, project=project, exclude_assignments=[a.pk, b.pk]).assignment
    assert [x.comparison.prompt_id for x in (a, b, c)] == [first.pk, first.pk, second.pk]
