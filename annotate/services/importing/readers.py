"""Readers for the generic formats: prompts with completions (JSONL, CSV, Parquet) and ready pairs.

Each reader validates every row and collects problems as (file, line, field, message); the
caller raises them all at once, so a bad row deep in a file leaves the database untouched.

Formats
- prompts-jsonl: {"prompt": str, "id"?: str|int, "category"?: str, "metadata"?: obj,
                  "completions": [{"text": str, "model"?: str, "metadata"?: obj}, ...]}
- prompts-csv / Parquet with those columns: prompt, completion, model?, prompt_id?, category?
  (one row per completion; rows of one prompt are grouped by prompt_id, else by prompt text)
- pairs-jsonl / Parquet with those columns: prompt, response_a, response_b, model_a?, model_b?,
  winner? (a | b | tie | both_bad), rationale?, id?; or TRL's prompt, chosen, rejected
  (chosen is recorded as the winner of an imported vote).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annotate.services.importing.records import (
    ComparisonRecord,
    CompletionRecord,
    ImportBatch,
    PromptRecord,
    VoteRecord,
)

Problem = tuple[str, int | None, str | None, str]
# Responses of a megabyte are real (long code files); the csv module's default cap is 128 KiB.
MAX_FIELD_BYTES = 64 * 1024 * 1024
csv.field_size_limit(MAX_FIELD_BYTES)
CHOICES = ("a", "b", "tie", "both_bad")


# Compressed inputs: only gzip (.gz) is read, through a byte budget so a bomb stops early.
MAX_EXPANSION = 100  # decompressed bytes per compressed byte, beyond MIN_BUDGET_BYTES
MIN_BUDGET_BYTES = 32 * 1024 * 1024
MAX_BLANK_LINES = 100_000
# Leading bytes of files that are not text, for a precise refusal instead of "invalid JSON".
BINARY_SIGNATURES = {
    b"PK\x03\x04": "a zip archive",
    b"\x89PNG": "a PNG image",
    b"\x28\xb5\x2f\xfd": "zstd-compressed data",
    b"BZh": "bzip2-compressed data",
    b"\xfd7zXZ": "xz-compressed data",
    b"7z\xbc\xaf": "a 7-zip archive",
    b"\x1f\x8b": "gzip-compressed data (name it .gz)",
    b"%PDF": "a PDF document",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
}


class TooLarge(OSError):
    """The (decompressed) input passed its byte budget; reading stopped there."""


class Problems(list):
    """Collects problems; stops a reader after `limit` so a garbage file fails fast."""

    limit = 100

    def add(self, file: str, line: int | None, field: str | None, message: str) -> None:
        self.append((file, line, field, message))

    @property
    def full(self) -> bool:
        return len(self) >= self.limit


class _Budgeted(io.RawIOBase):
    """A binary stream that raises TooLarge once more than `budget` bytes were read from it."""

    def __init__(self, inner, budget: int, what: str):
        self.inner, self.budget, self.what, self.seen = inner, budget, what, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read(min(len(buffer), 1 << 16))
        self.seen += len(data)
        if self.seen > self.budget:
            raise TooLarge(f"{self.what} exceeds {self.budget} bytes; refused")
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def decompressed_budget(path: Path) -> int:
    return max(MIN_BUDGET_BYTES, MAX_EXPANSION * path.stat().st_size)


def binary_kind(path: Path) -> str | None:
    """What a file that is not text looks like ("a PNG image"), from its first bytes; None for text."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            head = handle.read(512)
    except (OSError, EOFError):
        return "not readable as gzip" if path.suffix == ".gz" else None
    for signature, kind in BINARY_SIGNATURES.items():
        if head.startswith(signature):
            return kind
    if b"\x00" in head:
        return "binary data (NUL bytes)"
    return None


def bad_text(value: str) -> str | None:
    """Why a string cannot be stored as text (NUL, lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (U+{ord(value[exc.start]):04X}) at character {exc.start}: not valid Unicode"
    return None


def bad_json_text(value, depth: int = 0) -> str | None:
    """bad_text for every string (keys too) inside a JSON value (PostgreSQL's jsonb refuses NUL)."""
    if isinstance(value, str):
        return bad_text(value)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = bad_text(str(key)) or bad_json_text(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = bad_json_text(item, depth + 1)
            if problem:
                return problem
    return None


def open_binary(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return io.BufferedReader(
            _Budgeted(
                gzip.open(path, "rb"),
                decompressed_budget(path),
                f"decompressed, the file (more than {MAX_EXPANSION}x its size)",
            )
        )
    return open(path, "rb")


def open_text(path: Path) -> io.TextIOBase:
    raw = open_binary(path)
    # newline="" keeps CR/LF inside fields byte-exact; the csv module needs it too.
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")  # type: ignore[type-var]  # a binary stream; typeshed wants a BufferedReader


def iter_json_lines(path: Path, problems: Problems) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line; bad JSON or encoding is a problem.

    Lines are read as bytes and decoded one by one, so an encoding error names its own line;
    a line is at most MAX_FIELD_BYTES and a file holds at most MAX_BLANK_LINES blank lines,
    so neither an endless line nor a flood of empty ones can hold the reader.
    """
    name = path.name
    blank = 0
    with open_binary(path) as handle:
        line_no = 0
        while True:
            raw = handle.readline(MAX_FIELD_BYTES + 1)
            if not raw:
                return
            line_no += 1
            if len(raw) > MAX_FIELD_BYTES:
                problems.add(name, line_no, None, f"line longer than {MAX_FIELD_BYTES} bytes; refused")
                return
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.add(name, line_no, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                if problems.full:
                    return
                continue
            if not line.strip():
                blank += 1
                if blank > MAX_BLANK_LINES:
                    problems.add(name, line_no, None, f"more than {MAX_BLANK_LINES} blank lines; refused")
                    return
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(name, line_no, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            except RecursionError:
                problems.add(name, line_no, None, "invalid JSON: nested too deeply")
            else:
                if isinstance(obj, dict):
                    yield line_no, obj
                else:
                    problems.add(name, line_no, None, "each line must be a JSON object")
            if problems.full:
                return


def text_field(row: dict, field: str, file: str, line: int | None, problems: Problems, *, required: bool = True) -> str:
    value = row.get(field)
    if value is None or (isinstance(value, float) and value != value):  # missing or NaN (pandas/CSV)
        if required:
            problems.add(file, line, field, "is required")
        return ""
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool) and not required:
            return str(value)
        problems.add(file, line, field, f"must be a string, not {type(value).__name__}")
        return ""
    if required and not value.strip():
        problems.add(file, line, field, "must not be empty")
    problem = bad_text(value)
    if problem:
        problems.add(file, line, field, problem)
        return ""
    return value


def optional_id(row: dict, field: str, file: str, line: int | None, problems: Problems) -> str:
    value = row.get(field)
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.add(file, line, field, "must be a string or an integer")
        return ""
    if isinstance(value, str) and len(value) > 100:
        problems.add(file, line, field, "must be at most 100 characters")
        return ""
    if isinstance(value, str) and (broken := bad_text(value)):
        problems.add(file, line, field, broken)
        return ""
    return f"id:{value}"


def metadata_field(row: dict, file: str, line: int | None, problems: Problems, field: str = "metadata") -> dict:
    value = row.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(file, line, field, "must be an object")
        return {}
    problem = bad_json_text(value)
    if problem:
        problems.add(file, line, field, problem)
        return {}
    return value


# --- prompts with completions ------------------------------------------------------------------


def add_prompt_row(batch: ImportBatch, row: dict, file: str, line: int | None, problems: Problems) -> None:
    """One CSV/Parquet row: a prompt and one of its completions."""
    prompt_text = text_field(row, "prompt", file, line, problems)
    completion_text = text_field(row, "completion", file, line, problems)
    model = text_field(row, "model", file, line, problems, required=False) or "unknown"
    key = optional_id(row, "prompt_id", file, line, problems)
    category = text_field(row, "category", file, line, problems, required=False)
    if not prompt_text or not completion_text:
        return
    prompt = batch.prompt(PromptRecord(text=prompt_text, key=key, category=category, line=line))
    if prompt.text != prompt_text:
        problems.add(file, line, "prompt", f"differs from the prompt with the same prompt_id on line {prompt.line}")
        return
    prompt.add(CompletionRecord(text=completion_text, model=model))


def read_prompts_jsonl(path: Path, problems: Problems) -> ImportBatch:
    batch = ImportBatch(source=path.name, format="prompts-jsonl", build_pairs=True)
    file = path.name
    for line, row in iter_json_lines(path, problems):
        prompt_text = text_field(row, "prompt", file, line, problems)
        key = optional_id(row, "id", file, line, problems)
        category = text_field(row, "category", file, line, problems, required=False)
        metadata = metadata_field(row, file, line, problems)
        completions = row.get("completions")
        if not isinstance(completions, list) or not completions:
            problems.add(file, line, "completions", "must be a non-empty list")
            continue
        if not prompt_text:
            continue
        prompt = batch.prompt(PromptRecord(text=prompt_text, key=key, category=category, metadata=metadata, line=line))
        if prompt.text != prompt_text:
            problems.add(file, line, "prompt", f"differs from the prompt with the same id on line {prompt.line}")
            continue
        for i, completion in enumerate(completions):
            field = f"completions[{i}]"
            if not isinstance(completion, dict):
                problems.add(file, line, field, "must be an object with 'text' and 'model'")
                continue
            text = text_field(completion, "text", file, line, problems)
            model = text_field(completion, "model", file, line, problems, required=False) or "unknown"
            if text:
                prompt.add(
                    CompletionRecord(text=text, model=model, metadata=metadata_field(completion, file, line, problems))
                )
    return batch


def read_prompts_csv(path: Path, problems: Problems) -> ImportBatch:
    batch = ImportBatch(source=path.name, format="prompts-csv", build_pairs=True)
    for line, row in iter_csv_rows(path, problems, required_columns=("prompt", "completion")):
        add_prompt_row(batch, row, path.name, line, problems)
    return batch


def iter_csv_rows(path: Path, problems: Problems, *, required_columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(line where the record starts, row) for each CSV record; fields may span lines."""
    file = path.name
    reader = None
    try:
        with open_text(path) as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in required_columns if c not in header]
            if missing:
                problems.add(file, 1, missing[0], f"missing column (header has {header})")
                return
            start = reader.line_num + 1
            for row in reader:
                if None in row:
                    problems.add(
                        file, start, None, f"has {len(header) + len(row[None])} fields, header has {len(header)}"
                    )
                else:
                    yield start, row
                if problems.full:
                    return
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        problems.add(file, None, None, f"not valid UTF-8 ({exc.reason})")
    except csv.Error as exc:
        problems.add(file, reader.line_num if reader else None, None, f"malformed CSV: {exc}")


# --- ready pairs ---------------------------------------------------------------------------------


def add_pair_row(batch: ImportBatch, row: dict, file: str, line: int | None, problems: Problems) -> None:
    prompt_text = text_field(row, "prompt", file, line, problems)
    if "chosen" in row or "rejected" in row:  # TRL's preference format: chosen won
        text_a = text_field(row, "chosen", file, line, problems)
        text_b = text_field(row, "rejected", file, line, problems)
        winner = "a"
    else:
        text_a = text_field(row, "response_a", file, line, problems)
        text_b = text_field(row, "response_b", file, line, problems)
        winner = text_field(row, "winner", file, line, problems, required=False)
        if winner and winner not in CHOICES:
            problems.add(file, line, "winner", f"must be one of {list(CHOICES)} or absent")
            return
    model_a = text_field(row, "model_a", file, line, problems, required=False) or "unknown"
    model_b = text_field(row, "model_b", file, line, problems, required=False) or "unknown"
    rationale = text_field(row, "rationale", file, line, problems, required=False)
    key = optional_id(row, "id", file, line, problems)
    if not (prompt_text and text_a and text_b):
        return
    if text_a == text_b and model_a == model_b:
        problems.add(file, line, "response_b", "is identical to response_a")
        return
    prompt = batch.prompt(PromptRecord(text=prompt_text, key=key, line=line))
    if prompt.text != prompt_text:
        problems.add(file, line, "prompt", f"differs from the prompt with the same id on line {prompt.line}")
        return
    a = prompt.add(CompletionRecord(text=text_a, model=model_a))
    b = prompt.add(CompletionRecord(text=text_b, model=model_b))
    comparison = ComparisonRecord(prompt_key=prompt.key, completion_keys=[a.key, b.key])
    if winner:
        comparison.votes.append(
            VoteRecord(voter=f"{file}:{line}", shown=[a.key, b.key], choice=winner, rationale=rationale)
        )
    batch.comparisons.append(comparison)


def read_pairs_jsonl(path: Path, problems: Problems) -> ImportBatch:
    batch = ImportBatch(source=path.name, format="pairs-jsonl")
    for line, row in iter_json_lines(path, problems):
        add_pair_row(batch, row, path.name, line, problems)
    return batch


# --- parquet -------------------------------------------------------------------------------------


def read_parquet(path: Path, problems: Problems) -> ImportBatch:
    """Parquet with the prompts-table columns or the pairs columns; 'line' is the row number."""
    import pyarrow.parquet as pq

    file = path.name
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 — pyarrow raises several types for a non-parquet file
        problems.add(file, None, None, f"not a readable Parquet file ({exc})")
        return ImportBatch(source=file, format="parquet")
    columns = set(parquet.schema_arrow.names)
    if {"response_a", "response_b"} <= columns or {"chosen", "rejected"} <= columns:
        batch, add_row = ImportBatch(source=file, format="pairs-parquet"), add_pair_row
    elif {"prompt", "completion"} <= columns:
        batch, add_row = (ImportBatch(source=file, format="prompts-parquet", build_pairs=True), add_prompt_row)
    else:
        problems.add(file, None, None, f"columns {sorted(columns)} match neither the prompts table nor pairs")
        return ImportBatch(source=file, format="parquet")
    row_no = 0
    for record_batch in parquet.iter_batches(batch_size=10_000):
        for row in record_batch.to_pylist():
            row_no += 1
            add_row(batch, row, file, row_no, problems)
            if problems.full:
                return batch
    return batch


def first_json_object(path: Path) -> dict[str, Any] | None:
    try:
        with open_text(path) as handle:
            while line := handle.readline(MAX_FIELD_BYTES + 1):
                if line.strip():
                    obj = json.loads(line)
                    return obj if isinstance(obj, dict) else None
    except (UnicodeDecodeError, json.JSONDecodeError, OSError, EOFError, RecursionError):
        return None
    return None


def csv_header(path: Path) -> list[str]:
    try:
        with open_binary(path) as handle:  # only the first line: bad bytes further down are the reader's to report
            return next(csv.reader([handle.readline(MAX_FIELD_BYTES).decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error, OSError, EOFError):
        return []
