"""Import service: one entry point for the management command, the REST endpoint and jobs.

`import_file` reads and validates the whole file first; only a file without problems is
written, in one transaction. Re-importing the same file adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from annotate.models import Project
from annotate.services.importing.adapters import prd_root, read_copilot_arena, read_hh_rlhf, read_lfqa, read_prd
from annotate.services.importing.readers import (
    Problems,
    binary_kind,
    csv_header,
    first_json_object,
    read_pairs_jsonl,
    read_parquet,
    read_prompts_csv,
    read_prompts_jsonl,
)
from annotate.services.importing.records import ImportBatch
from annotate.services.importing.writer import ImportReport, Progress, write_batch
from prefloop.core.errors import ImportDataError

__all__ = ["FORMATS", "ImportReport", "detect_format", "import_file", "read_batch"]

# Archives and compressions other than gzip are refused by name, before anything is read.
REFUSED_SUFFIXES = {
    ".zip": "zip",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".bz2": "bzip2",
    ".xz": "xz",
    ".7z": "7-zip",
    ".tar": "tar",
    ".tgz": "tar",
    ".rar": "rar",
}
DEFAULT_MAX_IMPORT_BYTES = 2 * 1024**3

FORMATS: dict[str, Callable[[Path, Problems], ImportBatch]] = {
    "prompts-jsonl": read_prompts_jsonl,
    "prompts-csv": read_prompts_csv,
    "pairs-jsonl": read_pairs_jsonl,
    "parquet": read_parquet,
    "prd": read_prd,
    "hh-rlhf": read_hh_rlhf,
    "lfqa": read_lfqa,
    "copilot-arena": read_copilot_arena,
}


def detect_format(path: Path) -> str:
    """Guess the format from the file's name and first record; raise ImportDataError if unsure."""
    if path.is_dir():
        if prd_root(path):
            return "prd"
        raise ImportDataError([(path.name, None, None, "a folder is only accepted for PRD vicuna80 data")])
    if not path.is_file():
        raise ImportDataError([(path.name, None, None, "no such file")])
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".parquet"]:
        return "parquet"
    _refuse_binary(path)
    if ".csv" in suffixes:
        header = csv_header(path)
        if "acceptedIndex" in header:
            return "copilot-arena"
        if "prompt" in header and "completion" in header:
            return "prompts-csv"
        raise ImportDataError(
            [(path.name, 1, None, f"CSV header {header} has neither prompt+completion nor Copilot Arena columns")]
        )
    first = first_json_object(path)
    if first is None:
        raise ImportDataError([(path.name, 1, None, "cannot detect the format: the first line is not a JSON object")])
    keys = set(first)
    if "overall_preference" in keys and "answer_a" in keys:
        return "lfqa"
    if {"chosen", "rejected"} <= keys and "prompt" not in keys:
        return "hh-rlhf"
    if "completions" in keys:
        return "prompts-jsonl"
    if {"response_a", "response_b"} <= keys or {"prompt", "chosen", "rejected"} <= keys:
        return "pairs-jsonl"
    raise ImportDataError([(path.name, 1, None, f"cannot detect the format from keys {sorted(keys)}; pass --format")])


def max_import_bytes() -> int:
    return int(getattr(settings, "PREFLOOP_MAX_IMPORT_BYTES", DEFAULT_MAX_IMPORT_BYTES))


def check_input(path: Path) -> None:
    """Refuse what no reader should open: archives by name, files over the size limit (before reading)."""
    compression = next((REFUSED_SUFFIXES[s.lower()] for s in path.suffixes if s.lower() in REFUSED_SUFFIXES), None)
    if compression:
        raise ImportDataError(
            [(path.name, None, None, f"{compression} files are not accepted; give the file itself or gzip it (.gz)")]
        )
    if path.is_file() and path.stat().st_size > max_import_bytes():
        raise ImportDataError(
            [
                (
                    path.name,
                    None,
                    None,
                    f"larger than the import limit of {max_import_bytes()} bytes "
                    "(PREFLOOP_MAX_IMPORT_BYTES); refused without reading it",
                )
            ]
        )


def _refuse_binary(path: Path) -> None:
    kind = binary_kind(path)
    if kind:
        raise ImportDataError([(path.name, 1, None, f"this is {kind}, not JSON Lines or CSV text")])


def read_batch(path: Path, format: str | None = None) -> ImportBatch:
    """Read and validate a whole file; raise ImportDataError listing every problem found."""
    check_input(path)
    format = format or detect_format(path)
    if format not in FORMATS:
        raise ImportDataError([(path.name, None, None, f"unknown format {format!r}; known: {sorted(FORMATS)}")])
    if format in ("prompts-jsonl", "pairs-jsonl", "prompts-csv", "hh-rlhf", "lfqa", "copilot-arena") and path.is_file():
        _refuse_binary(path)
    problems = Problems()
    try:
        batch = FORMATS[format](path, problems)
    except (OSError, EOFError) as exc:  # unreadable, truncated gzip, ...
        raise ImportDataError([(path.name, None, None, f"cannot read: {exc}")]) from exc
    if problems:
        raise ImportDataError(list(problems))
    if not batch.prompts:
        raise ImportDataError([(path.name, None, None, "holds no records")])
    return batch


def import_file(
    *,
    project: Project,
    path: Path,
    format: str | None = None,
    pairing: str = "all",
    pairing_options: dict | None = None,
    seed: int = 0,
    round: int = 0,
    priority: int = 0,
    progress: Progress | None = None,
) -> ImportReport:
    batch = read_batch(Path(path), format)
    return write_batch(
        project=project,
        batch=batch,
        pairing=pairing,
        pairing_options=pairing_options,
        seed=seed,
        round=round,
        priority=priority,
        progress=progress,
    )
