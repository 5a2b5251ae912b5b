"""Completions sampled from a policy and the comparisons made of them: the annotate side of a round.

The training app calls these; it never writes annotate's tables itself. One transaction per call:
a round's completions and comparisons appear together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction

from annotate.models import Comparison, ComparisonItem, Completion, Project, Prompt

CHUNK = 500


@dataclass(frozen=True)
class SampledCompletion:
    prompt_id: int
    key: str  # unique per prompt, e.g. "r2-p3-0"
    text: str
    model_name: str  # "policy v3@round-2"
    policy_checkpoint_id: int
    round: int
    sampler_params: dict
    seed: int
    metadata: dict = field(default_factory=dict)


def add_sampled_completions(
    *, project: Project, completions: Sequence[SampledCompletion]
) -> dict[tuple[int, str], int]:
    """Store the samples (idempotent by (prompt, key)) and return {(prompt id, key): completion id}."""
    prompt_ids = {c.prompt_id for c in completions}
    found = set(Prompt.objects.filter(project=project, pk__in=prompt_ids).values_list("id", flat=True))
    missing = sorted(prompt_ids - found)
    if missing:
        raise ValueError(f"prompts {missing[:10]} are not in project {project.pk}")
    with transaction.atomic():
        existing = {
            (p, k): pk
            for p, k, pk in Completion.objects.filter(
                prompt_id__in=prompt_ids, key__in=[c.key for c in completions]
            ).values_list("prompt_id", "key", "id")
        }
        new = [
            Completion(
                prompt_id=c.prompt_id,
                key=c.key,
                text=c.text,
                source=Completion.Source.POLICY,
                model_name=c.model_name[:200],
                policy_checkpoint_id=c.policy_checkpoint_id,
                round=c.round,
                sampler_params=c.sampler_params,
                seed=c.seed,
                metadata=c.metadata,
            )
            for c in completions
            if (c.prompt_id, c.key) not in existing
        ]
        for row in Completion.objects.bulk_create(new, batch_size=CHUNK):
            existing[(row.prompt_id, row.key)] = row.pk
    return {(c.prompt_id, c.key): existing[(c.prompt_id, c.key)] for c in completions}


def add_comparisons(
    *, project: Project, round: int, pairs: Sequence[tuple[int, Sequence[int]]], priority: int = 0
) -> list[int]:
    """Comparisons of `round` for (prompt id, completion ids) entries; an existing set is reused.

    Completions must belong to the project's prompts. Returns the comparison ids in input order.
    """
    completion_ids = sorted({c for _, cs in pairs for c in cs})
    owner = dict(
        Completion.objects.filter(pk__in=completion_ids, prompt__project=project).values_list("id", "prompt_id")
    )
    for prompt_id, cs in pairs:
        if len(set(cs)) < 2:
            raise ValueError(f"a comparison needs two different completions, got {list(cs)}")
        wrong = [c for c in cs if owner.get(c) != prompt_id]
        if wrong:
            raise ValueError(f"completions {wrong} are not answers to prompt {prompt_id} of project {project.pk}")
    keys = ["-".join(str(c) for c in sorted(cs)) for _, cs in pairs]
    with transaction.atomic():
        ids = dict(Comparison.objects.filter(project=project, round=round, key__in=keys).values_list("key", "id"))
        wanted = {}
        for key, (prompt_id, cs) in zip(keys, pairs):
            if key not in ids and key not in wanted:
                wanted[key] = (prompt_id, tuple(sorted(cs)))
        created = Comparison.objects.bulk_create(
            [
                Comparison(project=project, prompt_id=p, key=k, round=round, priority=priority)
                for k, (p, _) in wanted.items()
            ],
            batch_size=CHUNK,
        )
        items: list[ComparisonItem] = []
        for comparison in created:
            ids[comparison.key] = comparison.pk
            items.extend(
                ComparisonItem(comparison_id=comparison.pk, completion_id=c, position=i)
                for i, c in enumerate(wanted[comparison.key][1])
            )
        ComparisonItem.objects.bulk_create(items, batch_size=CHUNK)
    return [ids[k] for k in keys]
