"""The raw export: one row per vote, with the sides as shown and both models (docs/export-format.md).

Beside annotate/export/rows.py (one aggregated row per pair and aspect), on the same filters and
chunking; bump RAW_SCHEMA_VERSION when its schema changes.
"""

from __future__ import annotations

from collections.abc import Iterator

from annotate.export.rows import ExportFilters, ExportStats, _comparison_ranges, _vote_filter, pseudonym
from annotate.models import Completion, Project, Vote

RAW_SCHEMA_VERSION = "prefloop.votes/1"


def iter_vote_rows(
    project: Project, filters: ExportFilters = ExportFilters(), stats: ExportStats | None = None
) -> Iterator[dict]:
    """The raw export: one row per vote, with the sides as shown and both models."""
    stats = stats if stats is not None else ExportStats()
    if "ai" in filters.sources:
        from judging.export import with_ai_rows

        yield from with_ai_rows(iter_vote_rows, project, filters, stats)
        return
    vote_q = _vote_filter(project, filters)
    for first, last in _comparison_ranges(project, filters):
        votes = list(
            Vote.objects.filter(vote_q, comparison_id__gte=first, comparison_id__lte=last)
            .order_by("id")
            .values(
                "id",
                "comparison_id",
                "comparison__round",
                "comparison__prompt_id",
                "aspect",
                "choice",
                "ranking",
                "ranking_ties",
                "strength",
                "rationale",
                "annotator_id",
                "external_annotator",
                "source",
                "shown_order",
                "winner_id",
                "loser_id",
                "time_spent_ms",
                "created_at",
            )
        )
        if not votes:
            continue
        models = dict(
            Completion.objects.filter(pk__in={c for v in votes for c in v["shown_order"]}).values_list(
                "id", "model_name"
            )
        )
        stats.comparisons += len({v["comparison_id"] for v in votes})
        for v in votes:
            shown = v["shown_order"]
            if v["winner_id"] in shown[:2] and len(shown) == 2:
                winner_position = "left" if v["winner_id"] == shown[0] else "right"
            else:
                winner_position = None
            stats.votes += 1
            stats.rows += 1
            yield {
                "schema_version": RAW_SCHEMA_VERSION,
                "vote_id": v["id"],
                "comparison_id": v["comparison_id"],
                "prompt_id": v["comparison__prompt_id"],
                "round": v["comparison__round"],
                "aspect": v["aspect"],
                "annotator": pseudonym(v["annotator_id"]) if v["annotator_id"] else v["external_annotator"],
                "source": v["source"],
                "choice": v["choice"],
                "ranking": v["ranking"],
                "ranking_ties": v["ranking_ties"],
                "strength": v["strength"],
                "rationale": v["rationale"],
                "shown": shown,
                "shown_models": [models.get(c) for c in shown],
                "winner_id": v["winner_id"],
                "loser_id": v["loser_id"],
                "winner_position": winner_position,
                "time_spent_ms": v["time_spent_ms"],
                "created_at": v["created_at"].isoformat(),
            }
