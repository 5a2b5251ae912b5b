"""Agreement statistics over reliability data: units (pairs) × coders (annotators) → value.

Pure Python + numpy/scipy, no Django. `units` maps a unit id to {coder: value}.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations

import numpy as np

Units = Mapping[Hashable, Mapping[Hashable, Hashable]]


def krippendorff_alpha(
    units: Units, *, level: str = "nominal", order: Sequence[Hashable] | None = None
) -> float | None:
    """Krippendorff's α from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's α").

    α = 1 − (n − 1) · Σ o_ck δ²_ck / Σ n_c n_k δ²_ck, over units with at least two values.
    level "nominal": δ² = [c ≠ k]. level "ordinal": δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k)/2)²
    with the values ranked by `order`. None when there is nothing to compare or no variation.
    """
    pairable = [list(values.values()) for values in units.values() if len(values) >= 2]
    values = sorted({v for vs in pairable for v in vs}, key=(order.index if order else repr))
    if not pairable or len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    coincidences = np.zeros((k, k))
    for unit_values in pairable:
        m = len(unit_values)
        counts = Counter(index[v] for v in unit_values)
        for c, n_c in counts.items():
            for d, n_d in counts.items():
                coincidences[c, d] += (n_c * (n_d - (c == d))) / (m - 1)
    n_c = coincidences.sum(axis=1)
    n = n_c.sum()
    if level == "nominal":
        delta = 1.0 - np.eye(k)
    elif level == "ordinal":
        cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
        delta = np.zeros((k, k))
        for c in range(k):
            for d in range(k):
                lo, hi = min(c, d), max(c, d)
                delta[c, d] = (cumulative[hi + 1] - cumulative[lo] - (n_c[c] + n_c[d]) / 2) ** 2
    else:
        raise ValueError("level must be 'nominal' or 'ordinal'")
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return None
    return float(1.0 - (n - 1) * (coincidences * delta).sum() / expected)


def percent_agreement(units: Units) -> float | None:
    """Share of agreeing pairs of coders within units (each unit's pairs weighted equally)."""
    agree = total = 0
    for values in units.values():
        for x, y in combinations(values.values(), 2):
            total += 1
            agree += x == y
    return agree / total if total else None


def binomial_p(successes: int, trials: int, p: float = 0.5) -> float | None:
    """Two-sided exact binomial test p-value (scipy), None without trials."""
    if trials == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(successes, trials, p).pvalue)
