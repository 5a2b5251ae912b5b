"""Bootstrap confidence intervals by multinomial resampling of pair counts, and the CI-based rank.

Resampling N battles with replacement and then counting is the same in distribution as one
multinomial draw over the (pair, outcome) cells with probabilities count / N, so a round costs
O(cells), not O(battles). All rounds are then fitted together (bt.fit_bt is batched), started
from the full-data MLE. Seeded with numpy's Generator: same seed, same intervals.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.sparse.csgraph import connected_components

from annotate.leaderboard.bt import FALLBACK_RIDGE, fit_bt, fit_bt_near
from annotate.leaderboard.counts import I_WINS, J_WINS, TIE, PairCounts

CI_LEVEL = 0.95
# Rounds fitted together: bounds the (batch, pairs) work arrays to ~ 4e6 floats each.
MAX_BATCH_CELLS = 4_000_000


def resample_counts(counts: PairCounts, *, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """(rounds, K, 3) counts, each a resample of all battles with replacement."""
    flat = counts.counts.reshape(-1).astype(np.float64)
    total = int(flat.sum())
    draws = rng.multinomial(total, flat / total, size=rounds)
    return draws.reshape(rounds, *counts.counts.shape)


def strongly_connected(wins: np.ndarray) -> np.ndarray:
    """(B,) True where the sample's MLE is finite (see bt.mle_exists)."""
    return np.array([connected_components(w > 0, directed=True, connection="strong")[0] == 1 for w in wins])


def bootstrap_theta(
    counts: PairCounts,
    *,
    rounds: int,
    seed: int,
    theta0: np.ndarray,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """θ for each bootstrap round, (rounds, n), started from the full-data MLE theta0; and how
    many rounds needed the fallback ridge because their resample has no finite MLE."""
    rng = np.random.default_rng(seed)
    samples = resample_counts(counts, rounds=rounds, rng=rng)
    n = counts.n_models
    batch = max(1, MAX_BATCH_CELLS // max(len(counts.pairs), 1))
    thetas = np.empty((rounds, n))
    fallback = 0
    for start in range(0, rounds, batch):
        chunk = samples[start:start + batch]
        half = 0.5 * chunk[..., TIE]
        theta, converged = fit_bt_near(counts.pairs, chunk[..., I_WINS] + half, chunk[..., J_WINS] + half, theta0)
        if not converged.all():
            # Rare: a resample far from the data (or with an infinite MLE): full Newton, ridge if needed.
            wins = counts.win_matrix(chunk[~converged])
            ok = strongly_connected(wins)
            fallback += int((~ok).sum())
            theta[~converged] = fit_bt(wins, ridge=np.where(ok, 0.0, FALLBACK_RIDGE), theta0=theta0).theta
        thetas[start:start + batch] = theta
        if progress:
            progress(min(start + batch, rounds))
    return thetas, fallback


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds per column (2.5 % and 97.5 % for level 0.95)."""
    tail = (1.0 - level) / 2.0
    return np.quantile(samples, tail, axis=0), np.quantile(samples, 1.0 - tail, axis=0)


def ci_rank(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """rank_i = 1 + #{j: lower_j > upper_i}: a model is outranked only by models clearly better."""
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)
