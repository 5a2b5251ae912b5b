"""Judge–human agreement figures from labels alone (no Django): MT-bench's agreement with and without ties,
Cohen's κ, the judge's position bias, and human–human agreement on the same items as the ceiling.

A label is "first", "second" or "tie" (a human's tie and both-bad are "tie"). Agreement is counted
over (judge verdict, human vote) pairs, as MT-bench does: "with ties" over every pair, "without
ties" over the pairs where neither said tie. Human–human agreement is counted over every pair of
two different people's votes on the same comparison and aspect, the same two ways.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations

from rewards.ml.metrics import wilson_interval

LABELS = ("first", "second", "tie")


@dataclass(frozen=True)
class Share:
    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.k, self.n) if self.n else None

    def as_dict(self) -> dict:
        return {"k": self.k, "n": self.n, "value": self.value, "ci": list(self.interval) if self.interval else None}


def agreement(pairs: Iterable[tuple[str, str]]) -> tuple[Share, Share]:
    """(with ties, without ties) over (label, label) pairs."""
    pairs = list(pairs)
    strict = [(a, b) for a, b in pairs if a != "tie" and b != "tie"]
    return Share(sum(a == b for a, b in pairs), len(pairs)), Share(sum(a == b for a, b in strict), len(strict))


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """κ = (p_o − p_e) / (1 − p_e) over the three labels; None without pairs or when p_e = 1."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    left, right = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(left[label] * right[label] for label in LABELS) / (n * n)
    if expected >= 1:
        return None
    return (observed - expected) / (1 - expected)


def order_pick(probs: Sequence[float]) -> str:
    """The position one order's letters point at: "A" (shown first), "B" or "C"."""
    from training.ml.judge import order_verdict

    return "ABC"[order_verdict(probs)]


def position_bias(orders: Iterable[Sequence[float]]) -> Share:
    """Share of the judge's non-tie picks, over both orders of every verdict, that went to the answer shown first."""
    picks = [order_pick(p) for p in orders]
    decided = [p for p in picks if p != "C"]
    return Share(sum(p == "A" for p in decided), len(decided))


def human_pairs(votes_by_item: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """Every pair of two votes on the same item (the votes of one item are by different people)."""
    return [pair for votes in votes_by_item for pair in combinations(votes, 2)]


@dataclass(frozen=True)
class AgreementRow:
    group: str
    items: int
    judge_human: Share
    judge_human_no_ties: Share
    kappa: float | None
    human_human: Share
    human_human_no_ties: Share
    position_bias: Share
    inconsistent: Share

    def as_dict(self) -> dict:
        out = asdict(self)
        for name, value in vars(self).items():
            if isinstance(value, Share):
                out[name] = value.as_dict()
        return out


def agreement_row(group: str, items: Sequence[dict]) -> AgreementRow:
    """items: {"judge": label, "consistent": bool, "order1": [3], "order2": [3], "humans": [labels]} per comparison+aspect."""
    judge_pairs = [(item["judge"], human) for item in items for human in item["humans"]]
    with_ties, without = agreement(judge_pairs)
    hh_with, hh_without = agreement(human_pairs(item["humans"] for item in items))
    orders = [o for item in items for o in (item["order1"], item["order2"])]
    return AgreementRow(
        group,
        len(items),
        with_ties,
        without,
        cohen_kappa(judge_pairs),
        hh_with,
        hh_without,
        position_bias(orders),
        Share(sum(not item["consistent"] for item in items), len(items)),
    )
