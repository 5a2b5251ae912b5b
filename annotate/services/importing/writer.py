"""Stores a validated ImportBatch in one transaction; existing rows are matched by key, never duplicated."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count

from annotate.models import Comparison, ComparisonItem, Completion, Project, Prompt, Vote
from annotate.pairing import get_pairing_strategy
from annotate.services.importing.records import ImportBatch
from prefloop.core.errors import ImportDataError

Progress = Callable[[str, int, int], None]  # (stage, done, total)
CHUNK = 500


@dataclass
class ImportReport:
    project: str
    source: str
    format: str
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    # Ids of the rows this import created, by kind (what undoing it removes); not part of as_dict.
    created_ids: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {
            "project": self.project,
            "source": self.source,
            "format": self.format,
            "created": self.created,
            "existing": self.existing,
            "skipped": self.skipped,
        }


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write_batch(
    *,
    project: Project,
    batch: ImportBatch,
    pairing: str = "all",
    pairing_options: dict | None = None,
    seed: int = 0,
    round: int = 0,
    priority: int = 0,
    progress: Progress | None = None,
) -> ImportReport:
    strategy = get_pairing_strategy(pairing)
    report = ImportReport(project=project.name, source=batch.source, format=batch.format, skipped=batch.skipped)
    tick = progress or (lambda stage, done, total: None)
    with transaction.atomic():
        prompt_ids = _upsert_prompts(project, batch, report)
        tick("prompts", 1, 4)
        completion_ids = _upsert_completions(batch, prompt_ids, report)
        tick("completions", 2, 4)

        wanted: dict[str, tuple[int, tuple[int, ...]]] = {}  # comparison key -> (prompt id, completion ids)
        for record in batch.comparisons:
            ids = tuple(sorted(completion_ids[(record.prompt_key, key)] for key in record.completion_keys))
            wanted.setdefault(_comparison_key(ids), (prompt_ids[record.prompt_key], ids))
        if batch.build_pairs:
            for prompt_id, ids in _pairs_for_prompts(
                [prompt_ids[k] for k in batch.prompts], strategy, seed, pairing_options or {}
            ):
                wanted.setdefault(_comparison_key(ids), (prompt_id, ids))
        comparison_ids = _upsert_comparisons(project, wanted, round, priority, report)
        tick("comparisons", 3, 4)

        _insert_votes(project, batch, completion_ids, comparison_ids, report)
        tick("votes", 4, 4)
    return report


def _comparison_key(ids: Iterable[int]) -> str:
    return "-".join(str(i) for i in sorted(ids))


def _upsert_prompts(project: Project, batch: ImportBatch, report: ImportReport) -> dict[str, int]:
    keys = list(batch.prompts)
    ids: dict[str, int] = {}
    for chunk in chunks(keys):
        ids.update(Prompt.objects.filter(project=project, key__in=chunk).values_list("key", "id"))
    report.existing["prompts"] = len(ids)
    new = [
        Prompt(
            project=project,
            key=r.key,
            text=r.text,
            category=r.category,
            metadata=r.metadata,
            messages=r.messages or [{"role": "user", "content": r.text}],
        )
        for k, r in batch.prompts.items()
        if k not in ids
    ]
    for prompt in Prompt.objects.bulk_create(new, batch_size=CHUNK):
        ids[prompt.key] = prompt.pk
    report.created["prompts"] = len(new)
    report.created_ids["prompts"] = [p.pk for p in new]
    return ids


def _upsert_completions(
    batch: ImportBatch, prompt_ids: dict[str, int], report: ImportReport
) -> dict[tuple[str, str], int]:
    key_of_prompt = {pid: key for key, pid in prompt_ids.items()}
    ids: dict[tuple[str, str], int] = {}
    for chunk in chunks(list(prompt_ids.values())):
        for prompt_id, key, pk in Completion.objects.filter(prompt_id__in=chunk).values_list("prompt_id", "key", "id"):
            ids[(key_of_prompt[prompt_id], key)] = pk
    wanted = [(pk, c) for pk, p in batch.prompts.items() for c in p.completions.values()]
    report.existing["completions"] = sum(1 for pk, c in wanted if (pk, c.key) in ids)
    new = [
        Completion(
            prompt_id=prompt_ids[pk],
            key=c.key,
            text=c.text,
            text_available=c.text_available,
            model_name=c.model,
            metadata=c.metadata,
        )
        for pk, c in wanted
        if (pk, c.key) not in ids
    ]
    for completion in Completion.objects.bulk_create(new, batch_size=CHUNK):
        ids[(key_of_prompt[completion.prompt_id], completion.key)] = completion.pk
    report.created["completions"] = len(new)
    report.created_ids["completions"] = [c.pk for c in new]
    return ids


def _pairs_for_prompts(
    prompt_ids: list[int], strategy, seed: int, options: dict
) -> Iterator[tuple[int, tuple[int, ...]]]:
    """Pairs over every completion with text a prompt has (this file's and earlier imports')."""
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for chunk in chunks(prompt_ids):
        rows = Completion.objects.filter(prompt_id__in=chunk, text_available=True).values_list("prompt_id", "id")
        for prompt_id, pk in rows:
            by_prompt[prompt_id].append(pk)
    for prompt_id in prompt_ids:
        # Seeded per prompt, so a re-import picks the same subset.
        rng = random.Random(f"{seed}:{prompt_id}")
        for ids in strategy(sorted(by_prompt[prompt_id]), rng=rng, **options):
            yield prompt_id, tuple(sorted(ids))


def _upsert_comparisons(
    project: Project, wanted: dict[str, tuple[int, tuple[int, ...]]], round: int, priority: int, report: ImportReport
) -> dict[str, int]:
    ids: dict[str, int] = {}
    keys = list(wanted)
    for chunk in chunks(keys):
        ids.update(Comparison.objects.filter(project=project, round=round, key__in=chunk).values_list("key", "id"))
    report.existing["comparisons"] = len(ids)
    unavailable: set[int] = set()
    all_completions = sorted({c for _, cs in wanted.values() for c in cs})
    for chunk in chunks(all_completions):
        unavailable.update(Completion.objects.filter(pk__in=chunk, text_available=False).values_list("id", flat=True))
    new = [
        Comparison(
            project=project,
            prompt_id=prompt_id,
            key=key,
            round=round,
            priority=priority,
            is_open=not unavailable.intersection(cs),
        )
        for key, (prompt_id, cs) in wanted.items()
        if key not in ids
    ]
    created = Comparison.objects.bulk_create(new, batch_size=CHUNK)
    items = []
    for comparison in created:
        ids[comparison.key] = comparison.pk
        for position, completion_id in enumerate(wanted[comparison.key][1]):
            items.append(ComparisonItem(comparison_id=comparison.pk, completion_id=completion_id, position=position))
    ComparisonItem.objects.bulk_create(items, batch_size=CHUNK)
    report.created["comparisons"] = len(new)
    report.created_ids["comparisons"] = [c.pk for c in created]
    return ids


def _insert_votes(
    project: Project,
    batch: ImportBatch,
    completion_ids: dict[tuple[str, str], int],
    comparison_ids: dict[str, int],
    report: ImportReport,
) -> None:
    rows: dict[tuple[int, str, str], Vote] = {}
    for record in batch.comparisons:
        for vote in record.votes:
            shown = [completion_ids[(record.prompt_key, key)] for key in vote.shown]
            comparison_id = comparison_ids[_comparison_key(shown)]
            winner = loser = None
            if vote.choice in ("a", "b"):
                winner, loser = (shown[0], shown[1]) if vote.choice == "a" else (shown[1], shown[0])
            identity = (comparison_id, vote.voter, vote.aspect)
            if identity in rows:
                raise ImportDataError(
                    [(batch.source, None, None, f"voter {vote.voter!r} votes twice on one comparison")]
                )
            rows[identity] = Vote(
                comparison_id=comparison_id,
                external_annotator=vote.voter,
                source=Vote.Source.IMPORTED,
                aspect=vote.aspect,
                choice=vote.choice,
                strength=vote.strength,
                rationale=vote.rationale,
                shown_order=shown,
                winner_id=winner,
                loser_id=loser,
            )
    touched = sorted({key[0] for key in rows})
    existing: set[tuple[int, str, str]] = set()
    for chunk in chunks(touched):
        existing.update(
            Vote.objects.filter(comparison_id__in=chunk, annotator__isnull=True).values_list(
                "comparison_id", "external_annotator", "aspect"
            )
        )
    new = [vote for identity, vote in rows.items() if identity not in existing]
    Vote.objects.bulk_create(new, batch_size=CHUNK)
    report.created["votes"] = len(new)
    report.created_ids["votes"] = [v.pk for v in new]
    report.existing["votes"] = len(rows) - len(new)

    # Imported votes count toward the overlap target: one per external voter.
    updates = []
    for chunk in chunks(touched):
        counts = (
            Vote.objects.filter(comparison_id__in=chunk, annotator__isnull=True)
            .values("comparison_id")
            .annotate(voters=Count("external_annotator", distinct=True))
        )
        by_id = {row["comparison_id"]: row["voters"] for row in counts}
        for comparison in Comparison.objects.filter(pk__in=chunk):
            comparison.imported_votes = by_id.get(comparison.pk, 0)
            comparison.is_complete = comparison.imported_votes + comparison.votes_done >= project.overlap_target
            updates.append(comparison)
    Comparison.objects.bulk_update(updates, ["imported_votes", "is_complete"], batch_size=CHUNK)
