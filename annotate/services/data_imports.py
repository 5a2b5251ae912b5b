"""Imports from the web UI: validate and preview first (nothing written), then confirm; undo while
no comparison of the import has a human vote, archive after that.

The preview runs the real writer inside a transaction that is rolled back, so its counts
(created vs already there) are exactly what the confirm will write, for any pairing strategy.
The uploaded file waits in a staging folder (PREFLOOP_IMPORT_STAGING_DIR) between the two steps.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from annotate.models import Comparison, ComparisonItem, Completion, DataImport, Project, Prompt, User, Vote
from annotate.services.importing import read_batch
from annotate.services.importing.records import ImportBatch
from annotate.services.importing.writer import ImportReport, write_batch
from prefloop.core.errors import FieldError, NotFound

PREVIEW_ROWS = 5  # records rendered in the preview
PREVIEW_CHARS = 600  # of each text shown there
STAGING_HOURS = 24  # an unconfirmed upload is removed after this
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class UndoRefused(FieldError):
    """An undo or archive the import's state or later data forbids."""

    code = "undo_refused"
    http_status = 400


@dataclass(frozen=True)
class ImportOptions:
    format: str | None = None
    pairing: str = "all"
    pairs_per_prompt: int = 2
    round: int = 0
    priority: int = 0

    def as_dict(self) -> dict:
        return {
            "format": self.format or "",
            "pairing": self.pairing,
            "pairs_per_prompt": self.pairs_per_prompt,
            "round": self.round,
            "priority": self.priority,
        }


@dataclass
class ImportPreview:
    token: str
    source: str
    format: str
    report: ImportReport
    in_file: dict[str, int]  # what the file holds: prompts, completions, comparisons, votes
    first_rows: list[dict] = field(default_factory=list)  # {"prompt", "category", "completions": [{"model", "text"}]}


class _Rollback(Exception):
    pass


def staging_dir() -> Path:
    return Path(getattr(settings, "PREFLOOP_IMPORT_STAGING_DIR", Path(settings.VAR_DIR) / "import-staging"))


def stage_upload(*, chunks, name: str) -> tuple[str, Path]:
    """Store an uploaded file under a random token; returns (token, path). Old unconfirmed uploads go."""
    _remove_stale()
    token = secrets.token_hex(16)
    folder = staging_dir() / token
    folder.mkdir(parents=True)
    safe = _SAFE_NAME.sub("_", Path(name or "upload").name).lstrip(".")[:100] or "upload"
    path = folder / safe
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return token, path


def staged_path(token: str) -> Path:
    if not _TOKEN.match(token or ""):
        raise NotFound("No such upload.")
    files = [p for p in (staging_dir() / token).glob("*") if p.is_file()] if (staging_dir() / token).is_dir() else []
    if not files:
        raise NotFound("This upload is gone (confirmed, cancelled or older than a day); upload the file again.")
    return files[0]


def discard_upload(token: str) -> None:
    if _TOKEN.match(token or ""):
        shutil.rmtree(staging_dir() / token, ignore_errors=True)


def _remove_stale() -> None:
    root = staging_dir()
    if not root.is_dir():
        return
    cutoff = time.time() - STAGING_HOURS * 3600
    for folder in root.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def preview_import(*, project: Project, token: str, options: ImportOptions) -> ImportPreview:
    """Validate the staged file and count what confirming would write; writes nothing.
    Raises ImportDataError with every problem (file, line, field, message)."""
    path = staged_path(token)
    batch = read_batch(path, options.format or None)
    try:
        with transaction.atomic():
            report = _write(project=project, batch=batch, options=options)
            raise _Rollback
    except _Rollback:
        pass
    return ImportPreview(
        token=token,
        source=path.name,
        format=batch.format,
        report=report,
        in_file=_in_file(batch),
        first_rows=_first_rows(batch),
    )


def confirm_import(*, project: Project, token: str, options: ImportOptions, user: User | None) -> DataImport:
    """Write the staged file (validated again: it is the same file) and record the import.
    The upload is claimed first (an atomic rename), so a double submit imports it once."""
    path = staged_path(token)
    claimed = staging_dir() / f"{token}.claimed"
    try:
        os.rename(path.parent, claimed)
    except OSError:
        raise NotFound("This upload is being imported already.") from None
    try:
        with transaction.atomic():
            batch = read_batch(claimed / path.name, options.format or None)
            report = _write(project=project, batch=batch, options=options)
            return DataImport.objects.create(
                project=project,
                source=path.name,
                format=batch.format,
                options=options.as_dict(),
                created=report.created,
                existing=report.existing,
                skipped=report.skipped[:1000],
                created_ids=report.created_ids,
                created_by=user,
            )
    finally:
        shutil.rmtree(claimed, ignore_errors=True)


def _write(*, project: Project, batch: ImportBatch, options: ImportOptions) -> ImportReport:
    return write_batch(
        project=project,
        batch=batch,
        pairing=options.pairing,
        pairing_options={"pairs_per_prompt": options.pairs_per_prompt},
        round=options.round,
        priority=options.priority,
    )


def _in_file(batch: ImportBatch) -> dict[str, int]:
    return {
        "prompts": len(batch.prompts),
        "completions": sum(len(p.completions) for p in batch.prompts.values()),
        "comparisons": len(batch.comparisons),
        "votes": sum(len(c.votes) for c in batch.comparisons),
        "skipped": len(batch.skipped),
    }


def _first_rows(batch: ImportBatch) -> list[dict]:
    rows = []
    for record in list(batch.prompts.values())[:PREVIEW_ROWS]:
        rows.append(
            {
                "line": record.line,
                "prompt": record.text[:PREVIEW_CHARS],
                "category": record.category,
                "completions": [
                    {"model": c.model, "text": c.text[:PREVIEW_CHARS], "text_available": c.text_available}
                    for c in list(record.completions.values())[:6]
                ],
            }
        )
    return rows


# --- undo and archive ---------------------------------------------------------------------------
def human_votes_on(data_import: DataImport) -> int:
    ids = data_import.created_ids.get("comparisons", [])
    return sum(
        Vote.objects.filter(comparison_id__in=ids[i : i + 5000], source=Vote.Source.HUMAN).count()
        for i in range(0, len(ids), 5000)
    )


def undo_import(*, data_import: DataImport) -> DataImport:
    """Remove every row the import created. Refused (UndoRefused, naming why) once one of its
    comparisons has a human vote, or when a later import built on its prompts or responses."""
    with transaction.atomic():
        data_import = DataImport.objects.select_for_update().get(pk=data_import.pk)
        if data_import.state != DataImport.State.ACTIVE:
            raise UndoRefused("state", f"this import is {data_import.state}")
        ids = {
            kind: data_import.created_ids.get(kind, []) for kind in ("prompts", "completions", "comparisons", "votes")
        }
        # Locks its comparisons (the assignment engine's first lock), so no vote lands meanwhile.
        list(
            Comparison.objects.select_for_update()
            .filter(pk__in=ids["comparisons"])
            .order_by("id")
            .values_list("id", flat=True)
        )
        if human_votes_on(data_import):
            raise UndoRefused("import", "its comparisons have votes from annotators; archive it instead")
        others = Comparison.objects.exclude(pk__in=ids["comparisons"])
        if (
            others.filter(prompt_id__in=ids["prompts"]).exists()
            or ComparisonItem.objects.filter(completion_id__in=ids["completions"])
            .exclude(comparison_id__in=ids["comparisons"])
            .exists()
        ):
            raise UndoRefused("import", "a later import uses its prompts or responses; undo that one first")
        touched = set(Vote.objects.filter(pk__in=ids["votes"]).values_list("comparison_id", flat=True)) - set(
            ids["comparisons"]
        )
        Vote.objects.filter(pk__in=ids["votes"]).delete()
        Comparison.objects.filter(pk__in=ids["comparisons"]).delete()  # items and leases with them
        Completion.objects.filter(pk__in=ids["completions"]).delete()
        Prompt.objects.filter(pk__in=ids["prompts"]).delete()
        _recount_imported_votes(data_import.project, touched)
        data_import.state, data_import.changed_at = DataImport.State.UNDONE, timezone.now()
        data_import.save(update_fields=["state", "changed_at"])
        return data_import


def archive_import(*, data_import: DataImport) -> DataImport:
    """Close the import's comparisons (no longer handed out) and keep everything for provenance."""
    with transaction.atomic():
        data_import = DataImport.objects.select_for_update().get(pk=data_import.pk)
        if data_import.state != DataImport.State.ACTIVE:
            raise UndoRefused("state", f"this import is {data_import.state}")
        Comparison.objects.filter(pk__in=data_import.created_ids.get("comparisons", [])).update(is_open=False)
        data_import.state, data_import.changed_at = DataImport.State.ARCHIVED, timezone.now()
        data_import.save(update_fields=["state", "changed_at"])
        return data_import


def _recount_imported_votes(project: Project, comparison_ids: set[int]) -> None:
    """Earlier comparisons that this import had added imported votes to: count what is left."""
    if not comparison_ids:
        return
    counts = dict(
        Vote.objects.filter(comparison_id__in=comparison_ids, annotator__isnull=True)
        .values("comparison_id")
        .annotate(n=Count("external_annotator", distinct=True))
        .values_list("comparison_id", "n")
    )
    for comparison in Comparison.objects.select_for_update().filter(pk__in=comparison_ids):
        comparison.imported_votes = counts.get(comparison.pk, 0)
        comparison.is_complete = not comparison.gold_label and (
            comparison.imported_votes + comparison.votes_done >= project.overlap_target
        )
        comparison.save(update_fields=["imported_votes", "is_complete"])
