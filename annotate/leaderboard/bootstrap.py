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
    ridge: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """θ for each bootstrap round, (rounds, n), started from the full-data fit theta0; and how
    many rounds were fitted with a ridge. ridge: the λ theta0 was fitted with. With λ = 0 (the
    full data have a finite MLE) a round gets the fallback ridge only if its resample has no
    finite MLE; with λ > 0 every round uses λ, so that the intervals describe the estimator that
    gave the point ratings."""
    rng = np.random.default_rng(seed)
    samples = resample_counts(counts, rounds=rounds, rng=rng)
    batch = max(1, MAX_BATCH_CELLS // max(len(counts.pairs), 1))
    thetas = np.empty((rounds, counts.n_models))
    with_ridge = 0
    for start in range(0, rounds, batch):
        chunk = samples[start : start + batch]
        thetas[start : start + batch], ridged = _fit_chunk(counts, chunk, theta0=theta0, ridge=ridge)
        with_ridge += ridged
        if progress:
            progress(min(start + batch, rounds))
    return thetas, with_ridge


def _fit_chunk(counts: PairCounts, chunk: np.ndarray, *, theta0: np.ndarray, ridge: float) -> tuple[np.ndarray, int]:
    """θ for resamples chunk (B, K, 3) and how many of them were fitted with a ridge."""
    half = 0.5 * chunk[..., TIE]
    theta, converged = fit_bt_near(
        counts.pairs, chunk[..., I_WINS] + half, chunk[..., J_WINS] + half, theta0, ridge=ridge
    )
    if ridge:
        lam = np.full(len(chunk), ridge)
    else:
        # The chord iteration "settles" on a resample whose MLE is infinite (the gradient fades as a
        # rating runs off), so those are refitted with the fallback ridge whatever it reported.
        infinite = without_finite_mle(counts, chunk)
        converged &= ~infinite
        lam = np.where(infinite, FALLBACK_RIDGE, 0.0)
    if not converged.all():
        # Rare: a resample far from the data or with an infinite MLE: full Newton from θ = 0.
        theta[~converged] = fit_bt(counts.win_matrix(chunk[~converged]), ridge=lam[~converged]).theta
    return theta, int((lam > 0).sum())


def without_finite_mle(counts: PairCounts, chunk: np.ndarray) -> np.ndarray:
    """(B,) True where a resample's MLE is infinite. A resample keeps a subset of the full data's
    'i won against j' edges, so when the full data's MLE is finite only the resamples that lost an
    edge need the graph check."""
    if not strongly_connected(counts.win_matrix()[None])[0]:
        return np.ones(len(chunk), dtype=bool)
    lost = (_win_edges(counts.counts)[None] & ~_win_edges(chunk)).any(axis=(-2, -1))
    infinite = np.zeros(len(chunk), dtype=bool)
    if lost.any():
        infinite[lost] = ~strongly_connected(counts.win_matrix(chunk[lost]))
    return infinite


def _win_edges(counts: np.ndarray) -> np.ndarray:
    """(..., K, 2): whether i won against j, and j against i (a tie is half a win each way)."""
    return np.stack([counts[..., I_WINS] + counts[..., TIE], counts[..., J_WINS] + counts[..., TIE]], axis=-1) > 0


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds per column (2.5 % and 97.5 % for level 0.95)."""
    tail = (1.0 - level) / 2.0
    return np.quantile(samples, tail, axis=0), np.quantile(samples, 1.0 - tail, axis=0)


def ci_rank(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """rank_i = 1 + #{j: lower_j > upper_i}: a model is outranked only by models clearly better."""
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)
