"""Chatbot Arena battle logs (JSON list or JSON Lines) read into arrays, with errors that name the
line and field: `model_a`, `model_b`, `winner` ∈ model_a | model_b | tie | tie (bothbad), optional
`tstamp`, and `conv_metadata` with the style counts (needed only for style control)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np

from annotate.leaderboard.battles_arrow import read_jsonl_columns
from annotate.leaderboard.counts import PairCounts
from annotate.leaderboard.style import STYLE_FIELDS, StyleBattles

WINNERS = {"model_a": 0, "tie": 1, "tie (bothbad)": 1, "model_b": 2}  # outcome codes of counts.PairCounts
OUTCOME_NAMES = {0: "a", 1: "tie", 2: "b"}
MAX_PROBLEMS = 20


class BattleFileError(ValueError):
    """A problem in a battle file; `problems` are (line, field or None, message)."""

    def __init__(self, path: str, problems: list[tuple[int, str | None, str]]):
        self.path = path
        self.problems = problems
        shown = [
            f"{path}:{line}: " + (f"field '{field}': " if field else "") + message
            for line, field, message in problems[:MAX_PROBLEMS]
        ]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
        super().__init__("\n".join(shown))


@dataclass(frozen=True, eq=False)
class BattleLog:
    """Battles in the file's order (sorted by `tstamp`, stably, when every row has one)."""

    models: tuple[str, ...]
    model_a: np.ndarray  # (m,) indices into models
    model_b: np.ndarray
    outcome: np.ndarray  # 0: model_a won, 1: tie or both-bad, 2: model_b won
    both_bad: np.ndarray  # (m,) bool
    style_a: np.ndarray | None  # (m, 4) raw counts, when every row carries conv_metadata
    style_b: np.ndarray | None

    def __len__(self) -> int:
        return len(self.outcome)

    def without_ties(self) -> BattleLog:
        keep = self.outcome != 1
        pick = lambda x: None if x is None else x[keep]
        return BattleLog(
            models=self.models,
            model_a=self.model_a[keep],
            model_b=self.model_b[keep],
            outcome=self.outcome[keep],
            both_bad=self.both_bad[keep],
            style_a=pick(self.style_a),
            style_b=pick(self.style_b),
        )

    def pair_counts(self) -> PairCounts:
        return PairCounts.from_arrays(
            self.model_a, self.model_b, self.outcome, list(self.models), both_bad=self.both_bad
        )

    def rows(self):
        """(model_a, model_b, outcome) in order, outcome in counts.OUTCOMES; for online Elo."""
        names = self.models
        for a, b, o, bad in zip(
            self.model_a.tolist(), self.model_b.tolist(), self.outcome.tolist(), self.both_bad.tolist()
        ):
            yield names[a], names[b], "both_bad" if bad else OUTCOME_NAMES[o]

    def style_battles(self) -> StyleBattles:
        if self.style_a is None or self.style_b is None:
            raise ValueError("style control needs conv_metadata with style counts on every battle")
        return StyleBattles(
            models=self.models,
            model_a=self.model_a,
            model_b=self.model_b,
            y=np.array([1.0, 0.5, 0.0])[self.outcome],
            style_a=self.style_a,
            style_b=self.style_b,
        )


def load_battles(path: str | Path, *, require_style: bool = False) -> BattleLog:
    """Read a battle file. Raises BattleFileError listing every bad line (up to 20 shown).
    A clean JSON Lines file is read by pyarrow (battles_arrow); anything else line by line."""
    path = Path(path)
    fast = read_jsonl_columns(path, STYLE_FIELDS)
    if fast is not None and not (require_style and fast["style"] is None):
        return _log_from_columns(fast)
    return _load_line_by_line(path, require_style=require_style)


def _log_from_columns(columns: dict) -> BattleLog:
    stamps, style = columns["stamps"], columns["style"]
    in_order = stamps is None or bool((stamps[1:] >= stamps[:-1]).all())  # then the stable sort is the identity
    order = slice(None) if in_order else np.argsort(stamps, kind="stable")
    return BattleLog(
        models=columns["models"],
        model_a=columns["model_a"][order],
        model_b=columns["model_b"][order],
        outcome=columns["outcome"][order],
        both_bad=columns["both_bad"][order],
        style_a=None if style is None else style[0][order],
        style_b=None if style is None else style[1][order],
    )


def _checked_fields(
    record: dict, line: int, problems: list[tuple[int, str | None, str]]
) -> tuple[list[str], object, object, bool]:
    """A record's two model names, winner and tstamp, and whether all were valid (problems added)."""
    ok = True
    pair: list[str] = []
    for field in ("model_a", "model_b"):
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            problems.append((line, field, "missing or not a non-empty string"))
            ok = False
        else:
            pair.append(value)
    winner = record.get("winner")
    if winner not in WINNERS:
        problems.append((line, "winner", f"{winner!r} is not one of {sorted(WINNERS)}"))
        ok = False
    stamp = record.get("tstamp")
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, (int, float))):
        problems.append((line, "tstamp", f"{stamp!r} is not a number"))
        ok = False
    return pair, winner, stamp, ok


def _load_line_by_line(path: Path, *, require_style: bool) -> BattleLog:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BattleFileError(str(path), [(0, None, f"cannot read: {exc}")]) from exc
    problems: list[tuple[int, str | None, str]] = []
    records = _records(text, problems)
    names: dict[str, int] = {}
    a_idx, b_idx, outcome, bad, stamps, style_a, style_b = [], [], [], [], [], [], []
    have_style = True
    for line, record in records:
        if not isinstance(record, dict):
            problems.append((line, None, f"expected a JSON object, got {type(record).__name__}"))
            continue
        pair, winner, stamp, ok = _checked_fields(record, line, problems)
        counts = _style_counts(record.get("conv_metadata"), line, problems if require_style else None)
        if counts is None:
            have_style = False
            ok = ok and not require_style
        if not ok:
            continue
        a_idx.append(names.setdefault(pair[0], len(names)))
        b_idx.append(names.setdefault(pair[1], len(names)))
        outcome.append(WINNERS[str(winner)])  # checked above: one of WINNERS
        bad.append(winner == "tie (bothbad)")
        stamps.append(stamp)
        if counts is not None:
            style_a.append(counts[0])
            style_b.append(counts[1])
    if problems:
        raise BattleFileError(str(path), sorted(problems, key=lambda problem: problem[0]))
    if not outcome:
        raise BattleFileError(str(path), [(0, None, "no battles in the file")])
    order = np.arange(len(outcome))
    if all(s is not None for s in stamps):
        order = np.argsort(np.asarray(stamps, dtype=np.float64), kind="stable")
    styled = have_style and len(style_a) == len(outcome)
    return BattleLog(
        models=tuple(names),
        model_a=np.asarray(a_idx, dtype=np.int64)[order],
        model_b=np.asarray(b_idx, dtype=np.int64)[order],
        outcome=np.asarray(outcome, dtype=np.int64)[order],
        both_bad=np.asarray(bad, dtype=bool)[order],
        style_a=np.asarray(style_a, dtype=np.float64)[order] if styled else None,
        style_b=np.asarray(style_b, dtype=np.float64)[order] if styled else None,
    )


def _records(text: str, problems: list) -> list[tuple[int, object]]:
    """(line number, parsed value) per record, for a JSON array or JSON Lines."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _array_records(text, problems)
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append((number, json.loads(raw)))
        except json.JSONDecodeError as exc:
            problems.append((number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
    return records


def _array_records(text: str, problems: list) -> list[tuple[int, object]]:
    # Element by element, so that each record knows the line it starts on.
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    records: list[tuple[int, object]] = []
    line_of = _line_counter(text)
    while True:
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == "]":
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            problems.append((exc.lineno, None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            return records
        records.append((line_of(pos), value))
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            problems.append((line_of(min(pos, len(text) - 1)), None, "expected ',' or ']' between records"))
            return records
    return records


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_counter(text: str):
    # Positions only grow, so count newlines incrementally.
    state = {"pos": 0, "line": 1}

    def line_of(pos: int) -> int:
        state["line"] += text.count("\n", state["pos"], pos)
        state["pos"] = pos
        return state["line"]

    return line_of


def _style_counts(meta, line: int, problems: list | None) -> tuple[list[float], list[float]] | None:
    """Arena's conv_metadata -> ([tokens, headers, lists, bolds] for a, same for b); a count may
    be an int or a dict of ints (Arena sums its values). None when absent or malformed."""
    if meta is None:
        if problems is not None:
            problems.append((line, "conv_metadata", "missing (style control needs it)"))
        return None
    if not isinstance(meta, dict):
        if problems is not None:
            problems.append((line, "conv_metadata", "not an object"))
        return None
    sides: tuple[list[float], list[float]] = ([], [])
    for fields in STYLE_FIELDS:
        for side, field in zip(sides, fields):
            value = meta.get(field)
            if isinstance(value, dict) and all(_is_count(v) for v in value.values()):
                value = sum(value.values())
            if not _is_count(value):
                if problems is not None:
                    problems.append((line, f"conv_metadata.{field}", f"{value!r} is not a count (int or dict of ints)"))
                return None
            side.append(float(value))
    return sides


def _is_count(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
