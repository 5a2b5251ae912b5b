"""Online Elo (Chatbot Arena's first leaderboard): one pass over battles in order, K-factor update.

Order-dependent by design, so it is a second view beside the BT fit, never the headline number.
"""

from __future__ import annotations

from collections.abc import Iterable

ELO_K = 4.0
ELO_SCALE = 400.0
ELO_BASE = 10.0
ELO_INIT = 1000.0
SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}  # both-bad is a tie, as in Arena


def online_elo(
    battles: Iterable[tuple[str, str, str]],
    *,
    k: float = ELO_K,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
    init: float = ELO_INIT,
) -> dict[str, float]:
    """battles: (model_a, model_b, outcome) in the order they happened. Returns rating per model.

    E_a = 1 / (1 + base^((R_b − R_a)/scale)); R_a += k (S_a − E_a); R_b += k ((1 − S_a) − E_b)."""
    rating: dict[str, float] = {}
    for model_a, model_b, outcome in battles:
        ra = rating.setdefault(model_a, init)
        rb = rating.setdefault(model_b, init)
        ea = 1.0 / (1.0 + base ** ((rb - ra) / scale))
        eb = 1.0 / (1.0 + base ** ((ra - rb) / scale))
        sa = SCORE[outcome]
        rating[model_a] = ra + k * (sa - ea)
        rating[model_b] = rating[model_b] + k * (1.0 - sa - eb)
    return rating
