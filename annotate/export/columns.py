"""Pair tallies (one Arrow row per pair × aspect: its vote counts, voters and texts) → export columns.

The columnar twin of the row loop in `annotate.export.rows.iter_preference_rows`: the same labels,
skips, tie policies and values, built a whole batch at a time with numpy and pyarrow compute,
without a Python dict per row. `tests/annotate/test_export_fast.py` holds the two to the same bytes.

The tally table (TALLY_SCHEMA) is what a source of votes produces (PostgreSQL: `tally_sql`). Each
export column is one entry of COLUMNS, a function of the labelled batch: a new source of votes
(an `ai` judge) adds its count to TALLY_SCHEMA and the SQL, and its columns here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from annotate.export.aggregate import LABELS, label_codes
from annotate.export.rows import SCHEMA_VERSION, ExportFilters, ExportOptions, ExportStats, hh_messages

TALLY_SCHEMA = pa.schema(
    [
        ("comparison_id", pa.int64()),
        ("prompt_id", pa.int64()),
        ("round", pa.int64()),
        ("aspect", pa.string()),
        ("category", pa.string()),
        ("prompt", pa.string()),
        ("prompt_hh", pa.bool_()),
        ("pair_id", pa.string()),
        ("a", pa.int64()),
        ("b", pa.int64()),
        ("text_a", pa.string()),
        ("text_b", pa.string()),
        ("available", pa.bool_()),
        *[
            (f"{name}_{side}", kind)
            for side in "ab"
            for name, kind in (
                ("model", pa.string()),
                ("source", pa.string()),
                ("checkpoint", pa.int64()),
                ("round", pa.int64()),
                ("params", pa.string()),
                ("seed", pa.int64()),
            )
        ],
        ("votes_a", pa.int64()),
        ("votes_b", pa.int64()),
        ("votes_tie", pa.int64()),
        ("votes_both_bad", pa.int64()),
        ("strength_sum_a", pa.int64()),
        ("strength_n_a", pa.int64()),
        ("strength_sum_b", pa.int64()),
        ("strength_n_b", pa.int64()),
        ("votes", pa.int64()),
        ("annotators", pa.list_(pa.string())),
        ("rationales", pa.list_(pa.string())),
    ]
)
COUNT_COLUMNS = {"a": "votes_a", "b": "votes_b", "tie": "votes_tie", "both_bad": "votes_both_bad"}
TIE_CODES = (LABELS.index("tie"), LABELS.index("both_bad"))


@dataclass(frozen=True)
class Labelled:
    """One batch after labelling and the skips: `tally` holds one row per output row (a tie pair
    twice under `both-orders`)."""

    tally: pa.Table
    codes: np.ndarray  # index in LABELS
    agreement: np.ndarray
    chosen_is_a: pa.Array  # bool, null where chosen/rejected are null
    options: ExportOptions


Column = Callable[[Labelled], pa.Array]


class PreferenceColumns:
    """Turns tally tables into export tables of `schema`, counting into `stats` as the row loop does."""

    def __init__(self, schema: pa.Schema, filters: ExportFilters, options: ExportOptions, stats: ExportStats) -> None:
        self.schema, self.filters, self.options, self.stats = schema, filters, options, stats
        self._last_comparison: int | None = None

    def table(self, tally: pa.Table) -> pa.Table:
        self._count_comparisons(tally)
        labelled = self._label(tally)
        return pa.Table.from_arrays([COLUMNS[name](labelled) for name in self.schema.names], schema=self.schema)

    def _count_comparisons(self, tally: pa.Table) -> None:
        """Tallies arrive sorted by comparison: count the changes of id, across batches too."""
        ids = tally.column("comparison_id").to_numpy()
        if len(ids):
            self.stats.comparisons += int(np.count_nonzero(np.diff(ids))) + int(ids[0] != self._last_comparison)
            self._last_comparison = int(ids[-1])

    def _label(self, tally: pa.Table) -> Labelled:
        stats, options = self.stats, self.options
        available = tally.column("available").to_numpy(zero_copy_only=False)
        stats.skipped_no_text += int(np.count_nonzero(~available))
        tally = tally.filter(pa.array(available))
        codes, agreement = label_codes(
            {label: tally.column(column).to_numpy() for label, column in COUNT_COLUMNS.items()}, options.rule
        )
        labelled = codes >= 0
        stats.skipped_no_label += int(np.count_nonzero(~labelled))
        keep = labelled.copy()
        if self.filters.min_agreement is not None:
            low = labelled & (agreement < self.filters.min_agreement)
            stats.skipped_agreement += int(np.count_nonzero(low))
            keep &= ~low
        tie = np.isin(codes, TIE_CODES)
        if options.ties == "drop":
            stats.skipped_ties += int(np.count_nonzero(keep & tie))
            keep &= ~tie
        index, chosen_is_a = _output_rows(np.flatnonzero(keep), codes, tie, both_orders=options.ties == "both-orders")
        codes = codes[index]
        stats.rows += len(index)
        for code, count in enumerate(np.bincount(codes, minlength=len(LABELS))):
            stats.labels[LABELS[code]] += int(count)
        return Labelled(tally.take(pa.array(index, type=pa.int64())), codes, agreement[index], chosen_is_a, options)


def _output_rows(
    kept: np.ndarray, codes: np.ndarray, tie: np.ndarray, *, both_orders: bool
) -> tuple[np.ndarray, pa.Array]:
    """(tally row of each output row, whether its chosen is response a). A decided pair's chosen is
    its winner; a tie's is null, or under both-orders a then b on two rows."""
    if both_orders:
        repeats = np.where(tie[kept], 2, 1)
        index = np.repeat(kept, repeats)
        second = np.zeros(len(index), dtype=bool)
        second[np.cumsum(repeats)[repeats == 2] - 1] = True
        is_a = np.where(tie[index], ~second, codes[index] == 0)
        return index, pa.array(is_a)
    index = kept
    return index, pa.array(codes[index] == 0, mask=tie[index])


# --- the export columns -------------------------------------------------------------------------


def _tally(name: str) -> Column:
    return lambda b: b.tally.column(name).combine_chunks()


def _constant(value: str) -> Column:
    return lambda b: pa.array(np.full(b.tally.num_rows, value, dtype=object), type=pa.string())


def _label_column(b: Labelled) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(b.codes, type=pa.int8()), pa.array(LABELS)).cast(pa.string())


def _strength(b: Labelled) -> pa.Array:
    def side(column: str) -> np.ndarray:
        return b.tally.column(column).to_numpy().astype(np.float64)

    sums = np.where(b.codes == 0, side("strength_sum_a"), side("strength_sum_b"))
    counts = np.where(b.codes == 0, side("strength_n_a"), side("strength_n_b"))
    missing = np.isin(b.codes, TIE_CODES) | (counts == 0)
    return pa.array(np.divide(sums, counts, out=np.zeros_like(sums), where=~missing), mask=missing)


def _margin(b: Labelled) -> pa.Array:
    return pc.fill_null(_strength(b), 0.0)


def _response(side: str) -> Column:
    return lambda b: _text(b, f"text_{side}")


def _text(b: Labelled, column: str) -> pa.Array:
    texts = b.tally.column(column).combine_chunks()
    if not b.options.conversational:
        return texts
    return pa.array(
        [None if t is None else [{"role": "assistant", "content": t.strip()}] for t in texts.to_pylist()],
        type=_messages_type(),
    )


def _pick(chosen: bool) -> Column:
    """chosen (or rejected): response a or b as chosen_is_a says; null where it is null."""

    def column(b: Labelled) -> pa.Array:
        n = b.tally.num_rows
        both = pa.concat_arrays([_text(b, "text_a"), _text(b, "text_b")])
        take_a = b.chosen_is_a if chosen else pc.invert(b.chosen_is_a)
        index = pc.if_else(take_a, pa.array(np.arange(n)), pa.array(np.arange(n, 2 * n)))
        return both.take(index)

    return column


def _chosen_side(b: Labelled) -> pa.Array:
    return pc.if_else(b.chosen_is_a, "a", "b")


def _prompt(b: Labelled) -> pa.Array:
    texts = b.tally.column("prompt").combine_chunks()
    if not b.options.conversational:
        return texts
    hh = b.tally.column("prompt_hh").to_pylist()
    return pa.array(
        [hh_messages(t) if is_hh else [{"role": "user", "content": t}] for t, is_hh in zip(texts.to_pylist(), hh)],
        type=_messages_type(),
    )


def _provenance(side: str) -> Column:
    def column(b: Labelled) -> pa.Array:
        t = b.tally
        params = t.column(f"params_{side}").combine_chunks().dictionary_encode()
        canonical = pa.array([_canonical_params(p) for p in params.dictionary.to_pylist()], type=pa.string())
        arrays = [
            t.column(f"model_{side}"),
            t.column(f"source_{side}"),
            t.column(f"checkpoint_{side}"),
            t.column(f"round_{side}"),
            canonical.take(params.indices),
            t.column(f"seed_{side}"),
        ]
        names = ["model", "source", "policy_checkpoint_id", "round", "sampler_params", "seed"]
        return pa.StructArray.from_arrays([_array(a) for a in arrays], names=names)

    return column


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


@lru_cache(maxsize=10_000)
def _canonical_params(text: str | None) -> str | None:
    """As the row loop writes sampler_params: JSON with sorted keys, None for an empty object."""
    params = {} if text in (None, "{}") else json.loads(text)
    return json.dumps(params, sort_keys=True) if params else None


def _messages_type() -> pa.DataType:
    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


COLUMNS: dict[str, Column] = {
    "schema_version": _constant(SCHEMA_VERSION),
    "pair_id": _tally("pair_id"),
    "comparison_id": _tally("comparison_id"),
    "prompt_id": _tally("prompt_id"),
    "round": _tally("round"),
    "aspect": _tally("aspect"),
    "category": _tally("category"),
    "prompt": _prompt,
    "chosen": _pick(chosen=True),
    "rejected": _pick(chosen=False),
    "chosen_side": _chosen_side,
    "response_a": _response("a"),
    "response_b": _response("b"),
    "label": _label_column,
    "votes": _tally("votes"),
    "votes_a": _tally("votes_a"),
    "votes_b": _tally("votes_b"),
    "votes_tie": _tally("votes_tie"),
    "votes_both_bad": _tally("votes_both_bad"),
    "agreement": lambda b: pa.array(b.agreement, type=pa.float64()),
    "strength": _strength,
    "margin": _margin,
    "rationales": _tally("rationales"),
    "annotators": _tally("annotators"),
    "provenance_a": _provenance("a"),
    "provenance_b": _provenance("b"),
    "source": _constant("human"),  # people's votes; the judge's "ai" rows come from the row loop (judging/export.py)
}
