"""Which completions of a prompt go to human labeling as pairs: all, random, or reward-model uncertain.

"uncertain" spends human effort where the current reward model knows least: the pairs whose
predicted preference P(a ≻ b) = σ(r_a − r_b) is closest to ½, i.e. |r_a − r_b| smallest. Taken
greedily, the next pair is the one whose completions have been used least so far, then the one
with the smallest |Δr| (seeded tie-break), so one completion is not compared over and over while
another is never shown.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

STRATEGIES = ("all", "random", "uncertain")


def select_pairs(
    groups: Sequence[Sequence[int]],
    *,
    strategy: str = "all",
    per_prompt: int = 2,
    rewards: dict[int, float] | None = None,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """Pairs (a, b) of completion ids, prompt by prompt in the order of `groups`.

    groups: the completion ids of each prompt. "all" returns every pair of each group (per_prompt
    is ignored); "random" a seeded sample of per_prompt pairs per group; "uncertain" per_prompt pairs
    per group chosen as in the module docstring, which needs `rewards` for every id.
    Within a pair, a comes before b in the group's order (the assignment engine randomises sides).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} (got {strategy!r})")
    if strategy != "all" and per_prompt < 1:
        raise ValueError("per_prompt must be positive")
    if strategy == "uncertain":
        if rewards is None:
            raise ValueError("rewards are required for strategy='uncertain'")
        missing = sorted({i for group in groups for i in group} - set(rewards))
        if missing:
            raise ValueError(f"rewards lack completion ids {missing[:10]}{'...' if len(missing) > 10 else ''}")
    rng = random.Random(seed)
    selected: list[tuple[int, int]] = []
    for group in groups:
        ids = list(dict.fromkeys(group))  # a completion listed twice is still one completion
        candidates = list(itertools.combinations(ids, 2))
        if strategy == "all":
            selected += candidates
        elif strategy == "random":
            picked = rng.sample(range(len(candidates)), min(per_prompt, len(candidates)))
            selected += [candidates[i] for i in sorted(picked)]
        else:
            assert rewards is not None  # checked above for 'uncertain'
            selected += _uncertain(candidates, rewards, per_prompt, rng)
    return selected


def _uncertain(
    candidates: list[tuple[int, int]], rewards: dict[int, float], k: int, rng: random.Random
) -> list[tuple[int, int]]:
    jitter = {pair: rng.random() for pair in candidates}  # seeded tie-break among equal gaps
    uses: dict[int, int] = {}
    left = list(candidates)
    chosen: list[tuple[int, int]] = []
    while left and len(chosen) < k:
        best = min(
            left,
            key=lambda p: (
                max(uses.get(p[0], 0), uses.get(p[1], 0)),
                uses.get(p[0], 0) + uses.get(p[1], 0),
                abs(rewards[p[0]] - rewards[p[1]]),
                jitter[p],
            ),
        )
        left.remove(best)
        chosen.append(best)
        for i in best:
            uses[i] = uses.get(i, 0) + 1
    return chosen


__all__ = ["STRATEGIES", "select_pairs"]
