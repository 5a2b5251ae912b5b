"""Held-out metrics of a reward model from its rewards on pairs: accuracy (with a Wilson interval), loss, ECE, by category."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _sigmoid(x: float) -> float:
    return math.exp(_log_sigmoid(x))


def pairwise_accuracy(deltas: Sequence[float]) -> float:
    """Share of pairs with r(chosen) > r(rejected); an exact tie of rewards counts half."""
    if not deltas:
        return float("nan")
    return sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in deltas) / len(deltas)


Z_95 = 1.959963984540054  # Φ⁻¹(0.975)


def wilson_interval(successes: float, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)   # (k, n) -> (lo, hi)

    p̂ = k/n;  centre = (p̂ + z²/2n) / (1 + z²/n);  half = z √(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n).
    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage near 0 and 1
    and for small n. k may be fractional (accuracy counts an exact tie of rewards as half).
    n = 0 gives (0, 1): nothing is known.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # The interval always contains p̂; clamping to it keeps that true in floating point (p̂ = 1 gave 1 − 1e-16).
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def bt_loss(deltas: Sequence[float]) -> float:
    return -sum(_log_sigmoid(d) for d in deltas) / len(deltas) if deltas else float("nan")


def expected_calibration_error(deltas: Sequence[float], *, bins: int = 10) -> tuple[float, list[dict]]:
    """ECE of p = σ(Δr) as P(chosen wins), 10 equal bins over [0, 1].

    Each pair enters in both orientations, (σ(Δ), won) and (σ(−Δ), lost), so the outcome is not
    constant and the reliability diagram is symmetric. ECE = Σ_b n_b/N · |mean p_b − share won_b|.
    Returns (ece, per-bin {lo, hi, n, confidence, observed}).
    """
    if not deltas:
        return float("nan"), []
    n = [0] * bins
    p_sum = [0.0] * bins
    y_sum = [0.0] * bins
    for d in deltas:
        for p, y in ((_sigmoid(d), 1.0), (_sigmoid(-d), 0.0)):
            b = min(int(p * bins), bins - 1)
            n[b] += 1
            p_sum[b] += p
            y_sum[b] += y
    total = sum(n)
    ece = sum(abs(p_sum[b] - y_sum[b]) for b in range(bins) if n[b]) / total
    table = [
        {
            "lo": b / bins,
            "hi": (b + 1) / bins,
            "n": n[b],
            "confidence": p_sum[b] / n[b] if n[b] else None,
            "observed": y_sum[b] / n[b] if n[b] else None,
        }
        for b in range(bins)
    ]
    return ece, table


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def reward_metrics(
    r_chosen: Sequence[float],
    r_rejected: Sequence[float],
    *,
    ties: Sequence[bool] | None = None,
    categories: Sequence[str] | None = None,
    bins: int = 10,
) -> dict:
    """Every held-out figure the registry stores. Ties are scored apart (|Δr| and tie loss)."""
    ties = ties or [False] * len(r_chosen)
    categories = categories or [""] * len(r_chosen)
    deltas = [c - r for c, r, t in zip(r_chosen, r_rejected, ties) if not t]
    tie_deltas = [c - r for c, r, t in zip(r_chosen, r_rejected, ties) if t]
    ece, reliability = expected_calibration_error(deltas, bins=bins)
    mean, std = _mean_std([*r_chosen, *r_rejected])
    by_category: dict[str, list[float]] = defaultdict(list)
    for d, category, t in zip((c - r for c, r in zip(r_chosen, r_rejected)), categories, ties):
        if not t:
            by_category[category or "(none)"].append(d)
    accuracy = pairwise_accuracy(deltas)
    low, high = wilson_interval(accuracy * len(deltas) if deltas else 0.0, len(deltas))
    metrics = {
        "pairs": len(deltas),
        "accuracy": accuracy,
        "accuracy_ci": [low, high],  # 95 % Wilson interval over the `pairs` held-out pairs
        "accuracy_ci_method": "wilson-95",
        "loss": bt_loss(deltas),
        "ece": ece,
        "reward_mean": mean,
        "reward_std": std,
        "margin_mean": sum(deltas) / len(deltas) if deltas else float("nan"),
        "accuracy_by_category": {
            k: {"pairs": len(v), "accuracy": pairwise_accuracy(v)} for k, v in sorted(by_category.items())
        },
        "reliability": reliability,
    }
    if tie_deltas:
        metrics["tie_pairs"] = len(tie_deltas)
        metrics["tie_abs_delta_mean"] = sum(abs(d) for d in tie_deltas) / len(tie_deltas)
        metrics["tie_loss"] = -sum(0.5 * (_log_sigmoid(d) + _log_sigmoid(-d)) for d in tie_deltas) / len(tie_deltas)
    return metrics
