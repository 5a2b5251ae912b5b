"""Bradley-Terry maximum likelihood on a win matrix, by Newton's method; Elo scaling and anchoring.

Model: P(i beats j) = σ(θ_i − θ_j) with θ in natural-log units; Elo = 1000 + θ · 400 / ln 10, so
P(i beats j) = 1 / (1 + 10^((R_j − R_i)/400)) (Chatbot Arena's convention, DESIGN.md §4).

Log-likelihood from the win matrix W (W_ij: i's wins over j, a tie half a win each way),
N = W + Wᵀ, p_ij = σ(θ_i − θ_j):
    ℓ(θ)   = Σ_ij W_ij log p_ij
    ∇ℓ_i   = Σ_j W_ij − N_ij p_ij
    −∇²ℓ   = L = diag(Σ_j H_ij) − H,   H_ij = N_ij p_ij (1 − p_ij)   (a weighted graph Laplacian)
L has the null space 1 (only rating differences are identified), so each step solves
(L + 11ᵀ + λI) δ = ∇ℓ − λθ, which keeps Σθ = 0. Everything is batched over a leading axis so
that a whole bootstrap is one sequence of (B, n, n) array operations and B small LU solves.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgWarning
from scipy.linalg import solve as dense_solve
from scipy.sparse.csgraph import connected_components
from scipy.special import expit as sigmoid  # σ without overflow warnings at |x| > 709

ELO_SCALE = 400.0 / np.log(10.0)  # Elo points per natural-log unit of θ
ELO_MEAN = 1000.0
# Used only when the MLE does not exist (a model that never lost or never won within a cut of
# the comparison graph): a Gaussian prior this weak keeps ratings finite and is reported.
FALLBACK_RIDGE = 1e-2


@dataclass(frozen=True)
class BTFit:
    theta: np.ndarray  # (..., n), natural-log units, mean zero
    iterations: int
    converged: bool
    ridge: np.ndarray | float  # penalty λ used per fit (0.0: plain MLE)


def mle_exists(wins: np.ndarray) -> bool:
    """The unregularised MLE is finite iff the 'i won against j' graph is strongly connected."""
    n = wins.shape[-1]
    if n < 2:
        return True
    count, _ = connected_components(wins > 0, directed=True, connection="strong")
    return count == 1


def log_likelihood(theta: np.ndarray, wins: np.ndarray) -> np.ndarray:
    """ℓ(θ) = Σ_ij W_ij log σ(θ_i − θ_j); batched: theta (..., n), wins (..., n, n) -> (...)."""
    diff = theta[..., :, None] - theta[..., None, :]
    return -(wins * np.logaddexp(0.0, -diff)).sum(axis=(-2, -1))


def fit_bt(
    wins: np.ndarray,
    *,
    ridge: np.ndarray | float = 0.0,
    theta0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> BTFit:
    """Maximise ℓ(θ) − λ/2 ‖θ‖². wins: (n, n) or (B, n, n); ridge: scalar or (B,). Returns θ with Σθ = 0.

    Newton with step halving (the objective is concave, but a full step from far away can
    overshoot when counts are extreme). Converges quadratically: 5-8 steps at 1e-10.
    Whole on purpose: one Newton iteration, batched; its parts have no meaning apart."""
    wins = np.asarray(wins, dtype=np.float64)
    single = wins.ndim == 2
    if single:
        wins = wins[None]
    batch, n, _ = wins.shape
    lam = np.broadcast_to(np.asarray(ridge, dtype=np.float64), (batch,)).copy()
    theta = np.zeros((batch, n)) if theta0 is None else np.broadcast_to(theta0, (batch, n)).astype(np.float64)
    theta = theta - theta.mean(axis=-1, keepdims=True)
    if n < 2:
        return BTFit(theta=theta[0] if single else theta, iterations=0, converged=True, ridge=ridge)
    battles = wins + np.swapaxes(wins, -1, -2)
    ones = np.ones((n, n))
    eye = np.eye(n)

    value = objective_at(theta, wins, lam)
    active = np.ones(batch, dtype=bool)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007  (the count is read after the loop)
        idx = np.flatnonzero(active)
        t = theta[idx]
        p = sigmoid(t[:, :, None] - t[:, None, :])  # p_ij = σ(θ_i − θ_j)
        # Σ_j W_ij − N_ij p_ij written as Σ_j W_ij p_ji − W_ji p_ij: no cancellation when p → 1
        # (1e6 one-sided battles would leave the gradient 1e-10 of noise and Newton never settling).
        w = wins[idx]
        grad = (
            (w * np.swapaxes(p, -1, -2)).sum(axis=-1) - (np.swapaxes(w, -1, -2) * p).sum(axis=-1) - lam[idx, None] * t
        )
        h = battles[idx] * p * np.swapaxes(p, -1, -2)  # N p (1 − p), with 1 − p_ij = p_ji
        laplacian = -h
        laplacian[:, np.arange(n), np.arange(n)] += h.sum(axis=-1)
        system = laplacian + ones + lam[idx, None, None] * eye
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LinAlgWarning)  # ill-conditioned: handled by newton_step
            step = np.stack([newton_step(m, g) for m, g in zip(system, grad)])
        # Step halving, per fit: accept the largest step 2^-k that does not lower the objective.
        scale = np.ones(len(idx))
        old = value[idx]
        for _ in range(30):
            candidate = t + scale[:, None] * step
            new = objective_at(candidate, wins[idx], lam[idx])
            worse = new < old - 1e-12 * np.abs(old)
            if not worse.any():
                break
            scale[worse] *= 0.5
        theta[idx] = candidate - candidate.mean(axis=-1, keepdims=True)
        value[idx] = new
        # Settled: the step is below tol, or the gain it promised (the Newton decrement gᵀδ) is below
        # what the objective can resolve in float64, as with a Hessian of condition 1e8 (a pair with 1e6
        # battles beside one with a single battle) where the step's rounding noise exceeds tol.
        decrement = scale * (grad * step).sum(axis=-1)
        done = (np.abs(scale[:, None] * step).max(axis=-1) < tol) | (decrement <= 1e-13 * (1.0 + np.abs(old)))
        active[idx[done]] = False
        if not active.any():
            break
    theta = theta[0] if single else theta
    return BTFit(theta=theta, iterations=iterations, converged=not active.any(), ridge=ridge)


def newton_step(system: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Solve system · δ = grad for one fit. The system is positive definite in exact arithmetic, so
    Cholesky (a loop over fits, since numpy's batched solve stalls on OpenBLAS thread hand-offs for
    many small systems). It turns numerically singular when far-apart ratings make p(1 − p)
    underflow to 0 and the Laplacian falls apart; then the least-squares step (the pseudo-inverse,
    still an ascent direction; step halving does the rest)."""
    try:
        return dense_solve(system, grad, assume_a="pos", check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(system, grad, rcond=None)[0]


def fit_bt_near(
    pairs: np.ndarray,
    wins_ij: np.ndarray,
    wins_ji: np.ndarray,
    theta0: np.ndarray,
    *,
    ridge: float = 0.0,
    tol: float = 1e-10,
    max_iter: int = 60,
) -> tuple[np.ndarray, np.ndarray]:
    """Many fits whose data are close to the data that gave theta0 (bootstrap resamples), on pair
    lists: pairs (K, 2), wins_ij / wins_ji (B, K) -> θ (B, n), converged (B,). ridge: the λ of
    fit_bt, the same for every fit (the one theta0 was fitted with).

    Chord (fixed-Hessian) Newton: θ ← θ + (L₀ + 11ᵀ + λI)⁻¹ (∇ℓ(θ) − λθ), with L₀ the Hessian at
    theta0 inverted once. A resample's Hessian differs from L₀ by sampling noise only, so the iteration
    contracts fast (≈ 1e-2 per step on 1M battles) and each step is two (B, K) × (K, n) products
    instead of B factorisations. Fits that do not settle are reported for a full Newton refit."""
    n = theta0.shape[-1]
    i, j = pairs[:, 0], pairs[:, 1]
    battles = wins_ij + wins_ji
    rounds = battles.shape[0]
    h0 = battles.mean(axis=0) * sigmoid(theta0[i] - theta0[j]) * sigmoid(theta0[j] - theta0[i])
    laplacian = np.zeros((n, n))
    np.add.at(laplacian, (i, j), -h0)
    laplacian = laplacian + laplacian.T
    laplacian[np.arange(n), np.arange(n)] = -laplacian.sum(axis=1)
    # + 11ᵀ fixes the free mean (gradients sum to zero). Singular only when the battle graph (or its
    # numerically non-zero part) falls apart and λ = 0: then the pseudo-inverse; fits that do not
    # settle are refitted by fit_bt anyway.
    system = laplacian + 1.0 + ridge * np.eye(n)
    try:
        inverse = np.linalg.inv(system)
    except np.linalg.LinAlgError:
        inverse = np.linalg.pinv(system)
    # Scatter of per-pair residuals to models as one bincount over flat (round, model) slots:
    # index gathers and bincounts, no (B, K) × (K, n) products.
    offset = (np.arange(rounds) * n)[:, None]
    slot_i, slot_j = (offset + i).ravel(), (offset + j).ravel()
    theta = np.broadcast_to(theta0, (rounds, n)).copy()
    converged = np.zeros(rounds, dtype=bool)
    for _ in range(max_iter):
        diff = theta[:, i] - theta[:, j]
        residual = wins_ij * sigmoid(-diff) - wins_ji * sigmoid(diff)  # = W_ij − N_ij p_ij, without cancellation
        flat = residual.ravel()
        grad: np.ndarray = (np.bincount(slot_i, flat, rounds * n) - np.bincount(slot_j, flat, rounds * n)).reshape(
            rounds, n
        )
        grad -= ridge * theta
        step = grad @ inverse
        step[converged] = 0.0
        theta += step
        size = np.abs(step).max(axis=-1)
        converged |= size < tol
        if converged.all() or not np.isfinite(size).all():
            break
    converged &= np.isfinite(theta).all(axis=-1)
    return theta - theta.mean(axis=-1, keepdims=True), converged


def objective_at(theta: np.ndarray, wins: np.ndarray, lam: np.ndarray) -> np.ndarray:
    return log_likelihood(theta, wins) - 0.5 * lam * (theta * theta).sum(axis=-1)


def to_elo(theta: np.ndarray, *, anchor_index: int | None = None, anchor_rating: float = ELO_MEAN) -> np.ndarray:
    """θ (mean zero) -> Elo: mean 1000, or shifted so that model `anchor_index` sits at `anchor_rating`."""
    ratings = ELO_MEAN + ELO_SCALE * (theta - theta.mean(axis=-1, keepdims=True))
    if anchor_index is not None:
        ratings = ratings + (anchor_rating - ratings[..., [anchor_index]])
    return ratings
