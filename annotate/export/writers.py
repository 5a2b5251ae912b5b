"""Writes export rows as JSONL, Parquet, CSV or a Hugging Face `datasets` folder, streaming, with a manifest.

The manifest (`<out>.manifest.json`, or `prefloop_export.json` inside an hf folder) records
how the data was made (rule, tie policy, filters), the counts and the SHA-256 of the content.
The content itself carries no timestamp, so the same snapshot exports byte for byte the same.

With the default tie policy (`split`) the pairs file holds only decided pairs, so trl's
DPOTrainer and RewardTrainer take it as is; tie and both-bad rows go to `<name>.ties.<ext>`
beside it (an hf folder: a `ties` split next to `train`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from django.db import connection, transaction
from django.db.models import Max

from annotate.export.rows import (
    SCHEMA_VERSION,
    TIE_LABELS,
    ExportFilters,
    ExportOptions,
    ExportStats,
    iter_preference_rows,
    manifest_filters,
)
from annotate.export.vote_rows import RAW_SCHEMA_VERSION, iter_vote_rows
from annotate.models import Project

FORMATS = ("jsonl", "parquet", "csv", "hf")
ENGINES = ("auto", "sql", "python")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BATCH_ROWS = 5000
NOT_CONTENT = ("prefloop_export.json", "README.md")
Progress = Callable[[int], None]  # rows written so far


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest_path: Path
    rows: int
    sha256: str
    metadata: dict
    ties_path: Path | None = None  # tie policy "split", file formats: the tie/both-bad rows
    ties_rows: int = 0


def _arrow_schema(*, raw: bool, conversational: bool):
    import pyarrow as pa

    if raw:
        return pa.schema(
            [
                ("schema_version", pa.string()),
                ("vote_id", pa.int64()),
                ("comparison_id", pa.int64()),
                ("prompt_id", pa.int64()),
                ("round", pa.int64()),
                ("aspect", pa.string()),
                ("annotator", pa.string()),
                ("source", pa.string()),
                ("choice", pa.string()),
                ("ranking", pa.list_(pa.int64())),
                ("ranking_ties", pa.list_(pa.list_(pa.int64()))),
                ("strength", pa.int64()),
                ("rationale", pa.string()),
                ("shown", pa.list_(pa.int64())),
                ("shown_models", pa.list_(pa.string())),
                ("winner_id", pa.int64()),
                ("loser_id", pa.int64()),
                ("winner_position", pa.string()),
                ("time_spent_ms", pa.int64()),
                ("created_at", pa.string()),
            ]
        )
    text = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])) if conversational else pa.string()
    provenance = pa.struct(
        [
            ("model", pa.string()),
            ("source", pa.string()),
            ("policy_checkpoint_id", pa.int64()),
            ("round", pa.int64()),
            ("sampler_params", pa.string()),
            ("seed", pa.int64()),
        ]
    )
    return pa.schema(
        [
            ("schema_version", pa.string()),
            ("pair_id", pa.string()),
            ("comparison_id", pa.int64()),
            ("prompt_id", pa.int64()),
            ("round", pa.int64()),
            ("aspect", pa.string()),
            ("category", pa.string()),
            ("prompt", text),
            ("chosen", text),
            ("rejected", text),
            ("chosen_side", pa.string()),
            ("response_a", text),
            ("response_b", text),
            ("label", pa.string()),
            ("votes", pa.int64()),
            ("votes_a", pa.int64()),
            ("votes_b", pa.int64()),
            ("votes_tie", pa.int64()),
            ("votes_both_bad", pa.int64()),
            ("agreement", pa.float64()),
            ("strength", pa.float64()),
            ("margin", pa.float64()),
            ("rationales", pa.list_(pa.string())),
            ("annotators", pa.list_(pa.string())),
            ("provenance_a", provenance),
            ("provenance_b", provenance),
            ("source", pa.string()),
        ]
    )


def _batched(rows: Iterable[dict], size: int = BATCH_ROWS) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def tables_from_rows(rows: Iterable[dict], schema) -> Iterator:
    """The row loops' dicts as Arrow tables of `schema` (the writers take tables)."""
    import pyarrow as pa

    for batch in _batched(rows):
        yield pa.Table.from_pylist(batch, schema=schema)


def _rebatch(tables: Iterable, size: int = BATCH_ROWS) -> Iterator:
    """Tables of exactly `size` rows (the last one less), one chunk per column: whatever the source's
    table sizes, a file gets the same row groups and so the same bytes."""
    import pyarrow as pa

    pending, held = [], 0
    for table in tables:
        while table.num_rows:
            take = min(size - held, table.num_rows)
            pending.append(table.slice(0, take))
            held += take
            table = table.slice(take)
            if held == size:
                yield pa.concat_tables(pending).combine_chunks()
                pending, held = [], 0
    if held:
        yield pa.concat_tables(pending).combine_chunks()


def _json_keys(schema) -> list[str]:
    """The key order of a JSON line: the row loop's (a preference row's chosen, rejected and
    chosen_side come last)."""
    late = [name for name in ("chosen", "rejected", "chosen_side") if name in schema.names]
    return [name for name in schema.names if name not in late] + late


def _write_jsonl(tables: Iterable, path: Path, schema, progress: Progress) -> int:
    count = 0
    keys = _json_keys(schema)
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for table in _rebatch(tables):
            rows = table.select(keys).to_pylist()
            out.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            count += len(rows)
            progress(count)
    return count


def csv_cell(value) -> str | int | float:
    """One CSV cell: lists and objects as JSON; a text that a spreadsheet would run as a formula gets a
    leading apostrophe (numbers stay numbers: -0.5 is a value, "-1+2" typed as text is not)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _write_csv(tables: Iterable, path: Path, schema, progress: Progress) -> int:
    count = 0
    columns = list(schema.names)
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for table in _rebatch(tables):
            rows = table.to_pylist()
            writer.writerows([csv_cell(row[c]) for c in columns] for row in rows)
            count += len(rows)
            progress(count)
    return count


def _write_parquet(tables: Iterable, path: Path, schema, metadata: dict, progress: Progress) -> int:
    import pyarrow.parquet as pq

    schema = schema.with_metadata({"prefloop": json.dumps(metadata, sort_keys=True)})
    count = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for table in _rebatch(tables):
            writer.write_table(table.replace_schema_metadata(schema.metadata))
            count += table.num_rows
            progress(count)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


def _write_hf(splits: dict[str, Iterable], path: Path, schema, metadata: dict, progress: Progress) -> dict[str, int]:
    """One split: a Dataset folder; several (train + ties): a DatasetDict folder. Splits are consumed in order."""
    import datasets

    counts, parts = {}, {}
    with tempfile.TemporaryDirectory(prefix="prefloop-export-") as tmp:
        for name, tables in splits.items():
            staged = Path(tmp) / f"{name}.parquet"
            counts[name] = _write_parquet(tables, staged, schema, metadata, progress if name == "train" else _quiet)
            parts[name] = (
                datasets.Dataset.from_parquet(str(staged), cache_dir=str(Path(tmp) / f"cache-{name}"))
                if counts[name]
                # datasets cannot read a parquet file without a row group (an empty split)
                else datasets.Dataset.from_dict(
                    {n: [] for n in schema.names}, features=datasets.Features.from_arrow_schema(schema)
                )
            )
            # datasets fingerprints a dataset by its (random) cache path; from the content instead, so
            # the folder's state.json, and with it the content hash, is the same for the same rows.
            parts[name]._fingerprint = _sha256(staged)[:16] if counts[name] else "empty"
        if path.exists():
            shutil.rmtree(path)
        dataset = parts["train"] if list(parts) == ["train"] else datasets.DatasetDict(parts)
        dataset.save_to_disk(str(path))
    return counts


def _quiet(count: int) -> None:
    pass


def _write_file(format: str, tables: Iterable, path: Path, schema, metadata: dict, progress: Progress) -> int:
    if format == "jsonl":
        return _write_jsonl(tables, path, schema, progress)
    if format == "parquet":
        return _write_parquet(tables, path, schema, metadata, progress)
    return _write_csv(tables, path, schema, progress)


def _route_ties(tables: Iterable, spool: Path, schema) -> Iterator:
    """Yields the decided pairs; writes the tie and both-bad rows to `spool` (Arrow IPC) as they pass."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with pa.OSFile(str(spool), "wb") as sink, pa.ipc.new_stream(sink, schema) as spooled:
        for table in tables:
            tie = pc.is_in(table.column("label"), value_set=pa.array(TIE_LABELS))
            spooled.write_table(table.filter(tie))
            yield table.filter(pc.invert(tie))


def _read_spool(spool: Path) -> Iterator:
    import pyarrow as pa

    with (
        pa.OSFile(str(spool), "rb") as source,
        pa.ipc.open_stream(source) as reader,
    ):  # a batch at a time, not mapped whole
        for batch in reader:
            yield pa.Table.from_batches([batch])


def ties_path_for(out: Path) -> Path:
    """prefs.jsonl -> prefs.ties.jsonl (the tie/both-bad rows of the same export)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.ties{out.suffix}") if out.suffix else out.with_name(out.name + ".ties")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    # The manifest and the dataset card name this hash, so they are not part of it.
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in NOT_CONTENT) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def export_dataset(
    *,
    project: Project,
    out: Path,
    format: str = "jsonl",
    filters: ExportFilters = ExportFilters(),
    options: ExportOptions = ExportOptions(),  # ties="split": tie rows in a file of their own
    raw: bool = False,
    progress: Progress | None = None,
    engine: str = "auto",
) -> ExportResult:
    """Export a project's preferences (or raw votes with raw=True) to `out`; returns counts and hash.

    `engine`: "sql" aggregates in PostgreSQL and builds the columns a batch at a time (the default
    there, "auto"); "python" runs the row loop of `rows.iter_preference_rows` (SQLite's path, and
    the reference the fast path is tested against). Both write the same bytes.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda n: None)
    stats = ExportStats()
    schema = _arrow_schema(raw=raw, conversational=options.conversational)
    with _snapshot() as max_vote_id:
        # The snapshot's bound goes into the filters (and so the manifest): exporting again with
        # those filters reads exactly these votes, so the same snapshot exports byte for byte.
        if filters.max_vote_id is None or filters.max_vote_id > max_vote_id:
            filters = replace(filters, max_vote_id=max_vote_id)
        metadata = {
            "schema_version": RAW_SCHEMA_VERSION if raw else SCHEMA_VERSION,
            "project": project.name,
            "project_id": project.pk,
            "kind": "votes" if raw else "preferences",
            "aggregation_rule": None if raw else options.rule,
            "ties": None if raw else options.ties,
            "conversational": options.conversational,
            "filters": manifest_filters(filters),
        }
        tables = _source(project, filters, options, stats, schema=schema, raw=raw, engine=engine)
        split = not raw and options.ties == "split"
        count, ties_count = _write_all(
            format, tables, out, split=split, schema=schema, metadata=metadata, progress=progress
        )
    ties_out = _publish(out, format=format, split=split)
    digest = _sha256(out)
    manifest = {
        **metadata,
        "format": format,
        "rows": count,
        "stats": stats.as_dict(),
        "sha256": digest,
        "created_at": datetime.now(UTC).isoformat(),
    }
    if split:
        manifest["ties_rows"] = ties_count
        if ties_out is not None:
            manifest.update(ties_file=ties_out.name, ties_sha256=_sha256(ties_out))
        else:
            manifest["splits"] = {"train": count, "ties": ties_count}
    manifest_path = out / "prefloop_export.json" if format == "hf" else out.with_name(out.name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    if format == "hf":
        from annotate.export.card import dataset_card

        (out / "README.md").write_text(
            dataset_card(project=project, manifest=manifest, schema=schema), encoding="utf-8"
        )
    return ExportResult(
        path=out,
        manifest_path=manifest_path,
        rows=count,
        sha256=digest,
        metadata=manifest,
        ties_path=ties_out,
        ties_rows=ties_count,
    )


def _source(
    project: Project,
    filters: ExportFilters,
    options: ExportOptions,
    stats: ExportStats,
    *,
    schema,
    raw: bool,
    engine: str,
) -> Iterator:
    """The export's rows as Arrow tables of `schema`, read in the current snapshot."""
    if raw:
        return tables_from_rows(iter_vote_rows(project, filters, stats), schema)
    # A record-browser filter names its comparisons by a queryset, which the SQL path cannot take:
    # such exports (a subset of a project) run the row loop, which writes the same bytes.
    # So does an export with the LLM judge's rows (source "ai", judging/export.py), which it appends.
    by_records = filters.comparisons is not None or "ai" in filters.sources
    if engine == "sql" or (engine == "auto" and connection.vendor == "postgresql" and not by_records):
        if by_records:
            raise ValueError("engine 'sql' cannot take a record-browser filter or AI rows")
        if connection.vendor != "postgresql":
            raise ValueError("engine 'sql' needs PostgreSQL")
        return _sql_tables(project, filters, options, stats, schema)
    return tables_from_rows(iter_preference_rows(project, filters, options, stats), schema)


def _sql_tables(
    project: Project, filters: ExportFilters, options: ExportOptions, stats: ExportStats, schema
) -> Iterator:
    from annotate.export.columns import PreferenceColumns
    from annotate.export.tally_sql import iter_tally_tables

    columns = PreferenceColumns(schema, filters, options, stats)
    for tally, votes in iter_tally_tables(project, filters):
        stats.votes += votes
        yield columns.table(tally)


def _write_all(
    format: str, tables: Iterable, out: Path, *, split: bool, schema, metadata: dict, progress: Progress
) -> tuple[int, int]:
    """Writes `out`.partial (and, split, its ties file's .partial); returns (pairs rows, tie rows)."""
    with tempfile.TemporaryDirectory(prefix="prefloop-ties-") as spool_dir:
        spool = Path(spool_dir) / "ties.arrow"
        pairs = _route_ties(tables, spool, schema) if split else tables
        if format == "hf":
            splits = {"train": pairs, "ties": _read_spool(spool)} if split else {"train": pairs}
            counts = _write_hf(splits, _partial(out), schema, metadata, progress)
            return counts["train"], counts.get("ties", 0)
        count = _write_file(format, pairs, _partial(out), schema, metadata, progress)
        if not split:
            return count, 0
        return count, _write_file(format, _read_spool(spool), _partial(ties_path_for(out)), schema, metadata, _quiet)


def _publish(out: Path, *, format: str, split: bool) -> Path | None:
    """Atomic publish: a reader never sees a half-written export under the final name. Returns the ties file."""
    ties_out = ties_path_for(out) if split and format != "hf" else None
    if ties_out is not None:
        os.replace(_partial(ties_out), ties_out)
    if out.is_dir():
        shutil.rmtree(out)
    os.replace(_partial(out), out)
    return ties_out


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


@contextmanager
def _snapshot():
    """One snapshot for the whole export; yields its bound, the highest vote id it includes.

    PostgreSQL: vote ids are handed out before their transactions commit, so "every vote up to
    id N" is only a stable set once no transaction that could still commit an id <= N is open.
    A SHARE lock on the vote table waits for the open vote transactions (milliseconds; new
    votes wait that long too), N is read under it, and the export then reads one REPEATABLE
    READ snapshot taken after that, filtered to ids <= N. Inside a caller's transaction the
    caller's isolation applies and N is read as is.

    SQLite: not one transaction (they are IMMEDIATE here and would stall every voter for the
    length of an export); its writers commit one at a time in id order, so max(id) is already
    a stable bound, and WAL readers see committed rows chunk by chunk.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield _max_vote_id()
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE annotate_vote IN SHARE MODE")
        bound = _max_vote_id()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # The export walks id ranges through indexes; PostgreSQL's default page cost (4, for
            # spinning disks) makes it hash-join whole tables for every chunk instead: O(n²).
            cursor.execute("SET LOCAL random_page_cost = 1.1")
        yield bound


def _max_vote_id() -> int:
    from annotate.models import Vote

    return Vote.objects.aggregate(m=Max("id"))["m"] or 0
