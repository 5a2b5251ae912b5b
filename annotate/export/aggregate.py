"""Votes on one pair of completions → one aggregated label. Pure Python, no Django.

Rules (written into every export's metadata):
- majority: the most frequent of a|b|tie|both_bad; a shared top count is a tie (no clear winner).
- bt: Bradley-Terry-consistent, as the leaderboard counts (DESIGN.md §4): a tie or both-bad gives
  half a point to each side; the side with more points wins; equal points → tie, or both_bad
  when both-bad votes outnumber tie votes.
- unanimous: a label only when every vote agrees; other pairs are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

RULES = ("majority", "bt", "unanimous")
LABELS = ("a", "b", "tie", "both_bad")


class PairVote(NamedTuple):
    """One annotator's judgement of a pair, oriented to the pair's (a, b). A tuple: exports build millions."""

    choice: str  # a | b | tie | both_bad
    annotator: str  # pseudonymous id
    strength: int | None = None
    rationale: str = ""


@dataclass(frozen=True)
class Aggregate:
    label: str | None  # None: the rule gives no label (unanimous without unanimity)
    counts: dict[str, int]
    agreement: float  # share of votes that agree with the label (0 when no label)
    strength: float | None  # mean strength of the votes for the winning side


def label_from_counts(counts: dict[str, int], rule: str = "majority") -> tuple[str | None, float]:
    """(label, agreement) from the counts of a, b, tie and both_bad votes on one pair."""
    n = counts["a"] + counts["b"] + counts["tie"] + counts["both_bad"]
    if rule == "majority":
        top = max(counts.values())
        leaders = [label for label in LABELS if counts[label] == top]
        label = leaders[0] if len(leaders) == 1 else "tie"
    elif rule == "bt":
        half = 0.5 * (counts["tie"] + counts["both_bad"])
        a, b = counts["a"] + half, counts["b"] + half
        label = "a" if a > b else "b" if b > a else ("both_bad" if counts["both_bad"] > counts["tie"] else "tie")
    elif rule == "unanimous":
        unanimous = next((label for label in LABELS if counts[label] == n), None) if n else None
        label = unanimous  # type: ignore[assignment]  # None: no label (the row is dropped)
    else:
        raise ValueError(f"unknown aggregation rule {rule!r}; known: {list(RULES)}")
    return label, (counts[label] / n if label and n else 0.0)


def aggregate(votes: Iterable[PairVote], rule: str = "majority") -> Aggregate:
    votes = list(votes)
    counts = dict.fromkeys(LABELS, 0)
    for vote in votes:
        counts[vote.choice] += 1
    label, agreement = label_from_counts(counts, rule)
    strengths = [v.strength for v in votes if v.choice == label and label in ("a", "b") and v.strength is not None]
    return Aggregate(
        label=label, counts=counts, agreement=agreement, strength=sum(strengths) / len(strengths) if strengths else None
    )


def pair_votes_from_ranking(ranking: list[int], ties: list[list[int]] | None = None) -> list[tuple[int, int]]:
    """A best-first ranking of K completions → its K(K-1)/2 (winner, loser) pairs, less the pairs
    that `ties` (groups of tied ids) puts level; those are `tied_pairs_from_ranking`."""
    tied = _tie_groups(ties)
    return [
        (ranking[i], ranking[j])
        for i in range(len(ranking))
        for j in range(i + 1, len(ranking))
        if tied.get(ranking[i], -1) != tied.get(ranking[j], -2)
    ]


def tied_pairs_from_ranking(ranking: list[int], ties: list[list[int]] | None) -> list[tuple[int, int]]:
    """The pairs of a ranking that its tie groups put level (each pair once, in ranking order)."""
    tied = _tie_groups(ties)
    return [
        (ranking[i], ranking[j])
        for i in range(len(ranking))
        for j in range(i + 1, len(ranking))
        if tied.get(ranking[i], -1) == tied.get(ranking[j], -2)
    ]


def _tie_groups(ties: list[list[int]] | None) -> dict[int, int]:
    return {completion: g for g, group in enumerate(ties or []) for completion in group}


def label_codes(counts: dict[str, np.ndarray], rule: str = "majority") -> tuple[np.ndarray, np.ndarray]:
    """`label_from_counts` over whole columns: (codes, agreement), a code being the label's index in
    LABELS, or -1 where the rule gives no label. `counts` maps each of LABELS to an int array."""
    import numpy as np

    stacked = np.stack([np.asarray(counts[label], dtype=np.int64) for label in LABELS])
    n = stacked.sum(axis=0)
    if rule == "majority":
        top = stacked.max(axis=0)
        single = (stacked == top).sum(axis=0) == 1
        codes = np.where(single, stacked.argmax(axis=0), LABELS.index("tie"))
    elif rule == "bt":
        half = 0.5 * (stacked[2] + stacked[3])
        a, b = stacked[0] + half, stacked[1] + half
        level = np.where(stacked[3] > stacked[2], LABELS.index("both_bad"), LABELS.index("tie"))
        codes = np.where(a > b, 0, np.where(b > a, 1, level))
    elif rule == "unanimous":
        whole = (stacked == n) & (n > 0)
        codes = np.where(whole.any(axis=0), whole.argmax(axis=0), -1)
    else:
        raise ValueError(f"unknown aggregation rule {rule!r}; known: {list(RULES)}")
    codes = codes.astype(np.int8)
    chosen = np.take_along_axis(stacked, np.maximum(codes, 0)[None, :].astype(np.int64), axis=0)[0]
    agreement = np.zeros(n.shape, dtype=np.float64)
    has = (codes >= 0) & (n > 0)
    agreement[has] = chosen[has] / n[has]
    return codes, agreement
