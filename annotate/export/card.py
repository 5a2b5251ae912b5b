"""The dataset card (README.md) of an hf export: schema, filters, counts, licences of the sources, manifest hash."""

from __future__ import annotations

import json

from django.db.models import Count
from django.db.models.fields.json import KeyTextTransform
from django.utils.html import escape

from annotate.models import Project, Prompt

LICENCE_KEYS = ("license", "licence")
# The preference columns' meanings, short (docs/export-format.md has the full table).
MEANINGS = {
    "pair_id": "comparison:a-b:aspect, stable across exports",
    "prompt": "TRL's explicit prompt",
    "chosen": "the preferred response (null only in the ties split)",
    "rejected": "the other response",
    "chosen_side": "a or b: which response is chosen",
    "response_a": "lower completion id, whatever side was shown",
    "label": "a | b | tie | both_bad, by the aggregation rule",
    "votes": "votes on this pair",
    "agreement": "share of votes agreeing with the label",
    "strength": "mean strength of the winning votes",
    "margin": "strength, 0 for ties: RewardTrainer's margin",
    "annotators": "pseudonymous voter ids",
    "provenance_a": "model or policy@round, sampler params, seed",
}
NOT_RECORDED = "not recorded"


def source_licences(project: Project) -> dict[str, int]:
    """Licence named in the imported prompts' metadata (`license` or `licence`) -> number of prompts."""
    counts: dict[str, int] = {}
    for key in LICENCE_KEYS:
        rows = (
            Prompt.objects.filter(project=project, **{f"metadata__{key}__isnull": False})
            .annotate(licence=KeyTextTransform(key, "metadata"))
            .values("licence")
            .annotate(n=Count("id"))
            .values_list("licence", "n")
        )
        for licence, n in rows:
            counts[str(licence)[:200]] = counts.get(str(licence)[:200], 0) + n
    unlabelled = Prompt.objects.filter(project=project).count() - sum(counts.values())
    if unlabelled > 0:
        counts[NOT_RECORDED] = unlabelled
    return dict(sorted(counts.items()))


def _yaml_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _md(value) -> str:
    """A value in a markdown table cell: inline code, pipes and backticks neutralised."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else value
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def dataset_card(*, project: Project, manifest: dict, schema) -> str:
    licences = source_licences(project)
    known = [name for name in licences if name != NOT_RECORDED]
    licence = known[0] if len(known) == 1 and NOT_RECORDED not in licences else "other"
    splits = manifest.get("splits") or {"train": manifest["rows"]}
    lines = [
        "---",
        f"license: {_yaml_text(licence.lower())}",
        f"pretty_name: {_yaml_text('prefloop export: ' + project.name)}",
        "tags: [rlhf, preference, dpo, reward-modeling, prefloop]",
        "---",
        "",
        f"# {escape(' '.join(project.name.split()))[:200]}: human preference data",
        "",
        f"Exported by prefloop, schema `{manifest['schema_version']}` (docs/export-format.md), "
        f"kind `{manifest['kind']}`, aggregation rule `{manifest['aggregation_rule']}`, ties `{manifest['ties']}`.",
        "",
        "```python",
        "import datasets",
        "data = datasets.load_from_disk(PATH)"
        + ('["train"]  # decided pairs; data["ties"]: ties and both-bad' if "ties" in splits else ""),
        "```",
        "",
        "## Counts",
        "",
        "| split | rows |",
        "|---|---:|",
        *(f"| {name} | {n} |" for name, n in splits.items()),
        "",
        "| count | value |",
        "|---|---:|",
        *(f"| {name} | {_md(value)} |" for name, value in sorted(manifest["stats"].items())),
        "",
        "(`rows` counts every row the rule produced, ties included; the split table counts each split.)",
        "",
        "## Filters",
        "",
        "| filter | value |",
        "|---|---|",
        *(f"| {name} | {_md(value)} |" for name, value in sorted(manifest["filters"].items())),
        "",
        "## Licence of the sources",
        "",
        "| licence | prompts |",
        "|---|---:|",
        *(f"| {_md(name)} | {n} |" for name, n in licences.items()),
        "",
        "Licences come from the imported prompts' `metadata.license`; check the sources' own terms "
        "before redistributing."
        if licences
        else "No prompts.",
        "",
        "## Schema",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
        *(f"| `{field.name}` | {_md(str(field.type))} | {MEANINGS.get(field.name, '')} |" for field in schema),
        "",
        "## Manifest",
        "",
        f"SHA-256 of the content (every file but this card and `prefloop_export.json`): `{manifest['sha256']}`.",
        f"Snapshot: votes with ids up to {manifest['filters'].get('max_vote_id')}. "
        "The full manifest is `prefloop_export.json` beside this card.",
        "",
    ]
    return "\n".join(lines)
