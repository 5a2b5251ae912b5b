"""Battles collapsed to counts per unordered model pair: the sufficient statistic of the BT fit.

A million battle rows over 100 systems become at most 4,950 pairs × (i wins, tie, j wins):
fitting and bootstrapping work on these counts and never touch rows again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Outcome of one battle, seen from model_a (Arena's `winner` column in our words).
OUTCOMES = ("a", "b", "tie", "both_bad")
I_WINS, TIE, J_WINS = 0, 1, 2


@dataclass(frozen=True, eq=False)
class PairCounts:
    """models: names, sorted; pairs: (K, 2) int indices with i < j; counts: (K, 3) battles in which
    i won, tied (tie or both-bad) and j won; both_bad: (K,) how many of the ties were both-bad."""

    models: tuple[str, ...]
    pairs: np.ndarray
    counts: np.ndarray
    both_bad: np.ndarray
    self_battles: int = 0  # a model against itself: carries no information, left out

    @classmethod
    def from_records(cls, records: Iterable[tuple[str, str, str, int]], *, exclude_ties: bool = False) -> PairCounts:
        """records: (model_a, model_b, outcome in OUTCOMES, number of battles); repeats add up."""
        cells: dict[tuple[str, str], list[int]] = {}
        self_battles = 0
        for model_a, model_b, outcome, n in records:
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
            if exclude_ties and outcome in ("tie", "both_bad"):
                continue
            if model_a == model_b:
                self_battles += n
                continue
            flip = model_a > model_b
            key = (model_b, model_a) if flip else (model_a, model_b)
            cell = cells.setdefault(key, [0, 0, 0, 0])
            if outcome in ("tie", "both_bad"):
                cell[TIE] += n
                cell[3] += n if outcome == "both_bad" else 0
            else:
                cell[J_WINS if (outcome == "a") == flip else I_WINS] += n
        return cls.from_cells(cells, self_battles=self_battles)

    @classmethod
    def from_arrays(
        cls,
        model_a: np.ndarray,
        model_b: np.ndarray,
        outcome: np.ndarray,
        models: list[str],
        *,
        both_bad: np.ndarray | None = None,
    ) -> PairCounts:
        """Vectorised: model_a/model_b are indices into `models`, outcome is 0 (a won), 1 (tie), 2 (b won)."""
        model_a, model_b, outcome = (np.asarray(x, dtype=np.int64) for x in (model_a, model_b, outcome))
        n = len(models)
        order = np.argsort(np.asarray(models))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)  # re-index so that indices follow sorted names
        a, b = rank[model_a], rank[model_b]
        keep = a != b
        self_battles = int((~keep).sum())
        a, b, outcome = a[keep], b[keep], outcome[keep]
        flip = a > b
        i, j = np.where(flip, b, a), np.where(flip, a, b)
        oriented = np.where(flip & (outcome != TIE), 2 - outcome, outcome)
        cell = (i * n + j) * 3 + oriented
        flat = np.bincount(cell, minlength=n * n * 3).reshape(n * n, 3)
        bad = np.zeros(n * n, dtype=np.int64)
        if both_bad is not None:
            bad = np.bincount((i * n + j)[np.asarray(both_bad, dtype=bool)[keep]], minlength=n * n)
        present = np.flatnonzero(flat.sum(axis=1))
        pairs = np.column_stack([present // n, present % n])
        return cls(
            models=tuple(np.asarray(models)[order].tolist()),
            pairs=pairs,
            counts=flat[present],
            both_bad=bad[present],
            self_battles=self_battles,
        )

    @classmethod
    def from_cells(cls, cells: dict[tuple[str, str], list[int]], *, self_battles: int = 0) -> PairCounts:
        models = sorted({m for key in cells for m in key})
        index = {m: k for k, m in enumerate(models)}
        keys = sorted(cells, key=lambda key: (index[key[0]], index[key[1]]))
        pairs = np.array([[index[a], index[b]] for a, b in keys], dtype=np.int64).reshape(-1, 2)
        values = np.array([cells[key] for key in keys], dtype=np.int64).reshape(-1, 4)
        return cls(
            models=tuple(models), pairs=pairs, counts=values[:, :3], both_bad=values[:, 3], self_battles=self_battles
        )

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def ties(self) -> int:
        return int(self.counts[:, TIE].sum())

    def win_matrix(self, counts: np.ndarray | None = None) -> np.ndarray:
        """W[..., i, j]: i's wins over j, a tie counting half a win each way. counts: (K, 3) or (B, K, 3)."""
        counts = self.counts if counts is None else counts
        batch = counts.shape[:-2]
        n = self.n_models
        wins = np.zeros(batch + (n, n))
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        half = 0.5 * counts[..., TIE]
        wins[..., i, j] = counts[..., I_WINS] + half
        wins[..., j, i] = counts[..., J_WINS] + half
        return wins

    def battle_matrix(self) -> np.ndarray:
        """Battles between i and j, ties included; symmetric."""
        n = self.n_models
        battles = np.zeros((n, n), dtype=np.int64)
        total = self.counts.sum(axis=1)
        battles[self.pairs[:, 0], self.pairs[:, 1]] = total
        battles[self.pairs[:, 1], self.pairs[:, 0]] = total
        return battles

    def decisive_win_rate(self) -> np.ndarray:
        """Share of i's wins over j among battles that had a winner (ties left out, as Arena's heat map);
        NaN where the two never had a decisive battle."""
        n = self.n_models
        wins = np.zeros((n, n))
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        wins[i, j] = self.counts[:, I_WINS]
        wins[j, i] = self.counts[:, J_WINS]
        decided = wins + wins.T
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(decided > 0, wins / decided, np.nan)

    def battles_per_model(self) -> np.ndarray:
        return self.battle_matrix().sum(axis=1)
