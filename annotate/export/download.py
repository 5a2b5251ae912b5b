"""An export as one file to download (REST and the UI's links): the pairs, their ties file, the manifest or an hf zip."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from annotate.export.rows import ExportFilters, ExportOptions
from annotate.export.writers import export_dataset
from annotate.models import Project
from prefloop.downloads import download_filename, download_response, safe_name_part, zip_folder


@dataclass(frozen=True)
class ExportDownload:
    path: Path  # the file to send
    folder: Path  # temporary; remove once sent
    filename: str  # safe: project, kind, part, snapshot and format
    kind: str  # a prefloop.downloads.MEDIA_TYPES key
    headers: dict[str, str]

    def response(self, request):
        """The file as an attachment (prefloop.downloads), its temporary folder removed once sent."""
        return download_response(
            self.path,
            filename=self.filename,
            kind=self.kind,
            request=request,
            remove_after=self.folder,
            headers=self.headers,
        )


def export_download(
    *, project: Project, query: dict, filters: ExportFilters | None = None, name: str = ""
) -> ExportDownload:
    """Runs the export named by a validated ExportQuerySerializer's data into a temporary folder.

    `filters`: instead of the query's own (the record browser's filter); `name`: a part of the file name."""
    folder = Path(tempfile.mkdtemp(prefix="prefloop-export-"))
    try:
        return _export_download(project, query, folder, filters or _filters(query), name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _filters(q: dict) -> ExportFilters:
    from judging.export import sources_for

    return ExportFilters(
        rounds=tuple(q["round"]) if q.get("round") else None,
        since=q.get("since"),
        until=q.get("until"),
        min_agreement=q.get("min_agreement"),
        annotators=tuple(q["annotator"]) if q.get("annotator") else None,
        aspect=q.get("aspect") or None,
        max_vote_id=q.get("max_vote_id"),
        sources=sources_for(q["source"]),
    )


def _export_download(project: Project, q: dict, folder: Path, filters: ExportFilters, name_part: str) -> ExportDownload:
    fmt, kind = q["format"], "votes" if q["raw"] else "preferences"
    out = folder / f"export.{fmt}"
    options = ExportOptions(rule=q["rule"], ties=q["ties"], conversational=q["conversational"])
    result = export_dataset(project=project, out=out, format=fmt, filters=filters, options=options, raw=q["raw"])
    snapshot = f"s{result.metadata['filters']['max_vote_id']}"
    name = safe_name_part(project.name, f"project-{project.pk}") + (
        f"-{safe_name_part(name_part, 'x')}" if name_part else ""
    )
    headers = {
        "X-Prefloop-Rows": str(result.rows),
        "X-Prefloop-SHA256": result.sha256,
        "X-Prefloop-Snapshot": str(result.metadata["filters"]["max_vote_id"]),
    }
    if "ties_rows" in result.metadata:
        headers["X-Prefloop-Ties-Rows"] = str(result.ties_rows)
    if q["part"] == "manifest":
        filename = download_filename(name, kind, snapshot, extension=f"{fmt}.manifest.json")
        return ExportDownload(result.manifest_path, folder, filename, "json", headers)
    if q["part"] == "ties":
        assert result.ties_path is not None  # the part is offered only when ties were written apart
        headers.update({"X-Prefloop-Rows": str(result.ties_rows), "X-Prefloop-SHA256": result.metadata["ties_sha256"]})
        return ExportDownload(
            result.ties_path, folder, download_filename(name, "ties", snapshot, extension=fmt), fmt, headers
        )
    if fmt == "hf":
        stem = download_filename(name, kind, snapshot, extension="hf")
        archive = zip_folder(result.path, folder / "export.zip", root=stem.replace(".", "-"))
        return ExportDownload(archive, folder, f"{stem}.zip", "zip", headers)
    return ExportDownload(result.path, folder, download_filename(name, kind, snapshot, extension=fmt), fmt, headers)
