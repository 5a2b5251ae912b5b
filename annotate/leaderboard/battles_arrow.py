"""The fast path of battles.load_battles: a JSON Lines battle file read and checked column by
column with pyarrow (C++ parser, vectorised checks) instead of a Python loop over records.

It answers only for a file it can fully vouch for; for anything else (a JSON array, a parse
error, a missing or mistyped field, an unknown winner, a style count that is not a count) it
returns None and the line-by-line reader runs, so every error message still names the line and
field exactly as before, and the arrays it returns are the ones that reader would build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

BLOCK_BYTES = 16 << 20  # one JSON line must fit in a block; a longer one falls back to the slow reader
WINNER_CODES = {"model_a": 0, "tie": 1, "tie (bothbad)": 1, "model_b": 2}


def read_jsonl_columns(path: Path, style_fields: tuple[tuple[str, str], ...]) -> dict | None:
    """Columns of a clean JSON Lines battle file (see the module docstring), or None."""
    try:
        with open(path, "rb") as head:
            if head.read(4096).lstrip()[:1] in (b"[", b""):
                return None  # a JSON array (or nothing): the line-by-line reader handles it
        table = pj.read_json(path, read_options=pj.ReadOptions(block_size=BLOCK_BYTES, use_threads=True))
    except (OSError, pa.ArrowException):
        return None
    if table.num_rows == 0:
        return None
    sides = [_model_column(table, name) for name in ("model_a", "model_b")]
    winner = _winner_codes(table)
    stamps = _stamps(table)
    style = _style(table, style_fields)
    if any(x is None for x in sides) or winner is None or stamps is False or style is False:
        return None
    models, model_a, model_b = _index_models(*sides)
    outcome, both_bad = winner
    return {
        "models": models,
        "model_a": model_a,
        "model_b": model_b,
        "outcome": outcome,
        "both_bad": both_bad,
        "stamps": stamps,
        "style": style,
    }


def _model_column(table: pa.Table, name: str) -> pa.DictionaryArray | None:
    """Dictionary-encoded names; the check that each is a non-empty string runs on the few distinct
    values, with Python's str.strip as the line-by-line reader uses."""
    if name not in table.column_names or not pa.types.is_string(table[name].type) or table[name].null_count:
        return None
    encoded = pc.dictionary_encode(table[name].combine_chunks())
    if not all(value.strip() for value in encoded.dictionary.to_pylist()):
        return None
    return encoded


def _winner_codes(table: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    if "winner" not in table.column_names or not pa.types.is_string(table["winner"].type):
        return None
    encoded = pc.dictionary_encode(table["winner"].combine_chunks())
    if encoded.null_count:
        return None
    values = encoded.dictionary.to_pylist()
    if any(v not in WINNER_CODES for v in values):
        return None
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    codes = np.array([WINNER_CODES[v] for v in values], dtype=np.int64)
    bad = np.array([v == "tie (bothbad)" for v in values], dtype=bool)
    return codes[indices], bad[indices]


def _stamps(table: pa.Table) -> np.ndarray | None | bool:
    """tstamp as float64 when every row has a number; None when some or all rows have none;
    False (fall back) when a value is not a number."""
    if "tstamp" not in table.column_names:
        return None
    column = table["tstamp"]
    if pa.types.is_null(column.type):
        return None
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        return False
    if column.null_count:
        return None
    return column.combine_chunks().to_numpy(zero_copy_only=False).astype(np.float64)


def _style(table: pa.Table, style_fields: tuple[tuple[str, str], ...]) -> tuple[np.ndarray, np.ndarray] | None | bool:
    """(style_a, style_b) raw counts, (m, 4) each; None without conv_metadata; False to fall back."""
    if "conv_metadata" not in table.column_names:
        return None
    meta = table["conv_metadata"].combine_chunks()
    if not pa.types.is_struct(meta.type) or meta.null_count:
        return False
    sides: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for fields in style_fields:
        for side, field in zip(sides, fields):
            if meta.type.get_field_index(field) < 0:
                return False
            counts = _counts(meta.field(field))
            if counts is None:
                return False
            side.append(counts)
    return np.column_stack(sides[0]), np.column_stack(sides[1])


def _counts(column: pa.Array) -> np.ndarray | None:
    """An int/float column, or a struct of them (Arena's per-level counts, summed); all ≥ 0."""
    if column.null_count:
        return None
    if pa.types.is_struct(column.type):
        parts = [_counts(column.field(k)) for k in range(column.type.num_fields)]
        summed = np.zeros(len(column))
        for part in parts:
            if part is None:
                return None
            summed += part
        return summed
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        return None
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return values if (values >= 0).all() else None


def _index_models(a: pa.DictionaryArray, b: pa.DictionaryArray) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Model indices numbered by first appearance, reading model_a before model_b on each line."""
    names_a, names_b = a.dictionary.to_pylist(), b.dictionary.to_pylist()
    idx_a = a.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    idx_b = b.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    first: dict[str, int] = {}
    for names, idx, side in ((names_a, idx_a, 0), (names_b, idx_b, 1)):
        _, at = np.unique(idx, return_index=True)  # dictionary codes are 0..k-1, all used
        for name, position in zip(names, at.tolist()):
            key = 2 * position + side
            first[name] = min(first.get(name, key), key)
    models = tuple(sorted(first, key=first.__getitem__))
    number = {m: k for k, m in enumerate(models)}
    map_a = np.array([number[n] for n in names_a], dtype=np.int64)
    map_b = np.array([number[n] for n in names_b], dtype=np.int64)
    return models, map_a[idx_a], map_b[idx_b]
