"""Pairing strategies: which comparisons to build from the K completions of one prompt.

A strategy is a function `(completion_ids, *, rng, **options) -> list of id tuples`. Register
new ones with `@pairing_strategy("name")`; the round/reward-model-driven strategies of the
training app plug in the same way.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence

PairingStrategy = Callable[..., list[tuple[int, ...]]]
PAIRING_STRATEGIES: dict[str, PairingStrategy] = {}


def pairing_strategy(name: str) -> Callable[[PairingStrategy], PairingStrategy]:
    def register(func: PairingStrategy) -> PairingStrategy:
        PAIRING_STRATEGIES[name] = func
        return func

    return register


def get_pairing_strategy(name: str) -> PairingStrategy:
    try:
        return PAIRING_STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown pairing strategy {name!r}; known: {sorted(PAIRING_STRATEGIES)}") from None


@pairing_strategy("all")
def all_pairs(completion_ids: Sequence[int], *, rng: random.Random, **_: object) -> list[tuple[int, ...]]:
    """Every unordered pair: K(K-1)/2 comparisons."""
    return list(itertools.combinations(sorted(completion_ids), 2))


@pairing_strategy("sample")
def sampled_pairs(
    completion_ids: Sequence[int], *, rng: random.Random, pairs_per_prompt: int = 2, **_: object
) -> list[tuple[int, ...]]:
    """A seeded random subset of the pairs, at most `pairs_per_prompt` per prompt."""
    pairs = all_pairs(completion_ids, rng=rng)
    return sorted(rng.sample(pairs, min(pairs_per_prompt, len(pairs))))


@pairing_strategy("kway")
def one_kway(completion_ids: Sequence[int], *, rng: random.Random, **_: object) -> list[tuple[int, ...]]:
    """One comparison of all K completions, voted as a ranking (exports expand it into pairs)."""
    return [tuple(sorted(completion_ids))] if len(completion_ids) >= 2 else []


@pairing_strategy("none")
def no_pairs(completion_ids: Sequence[int], *, rng: random.Random, **_: object) -> list[tuple[int, ...]]:
    """Import the completions only; comparisons come later (e.g. from a round)."""
    return []
