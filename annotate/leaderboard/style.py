"""Style-controlled Bradley-Terry (Chatbot Arena's "style control"): ratings net of length and Markdown.

Per battle and style element e (response tokens, Markdown headers, list items, bold spans):
    d_e = (a_e − b_e) / (a_e + b_e + 1),  then z-scored over battles (population std)
    logit = ln10 · (w_a − w_b) + d · β,   Elo_m = 1000 + 400 · w_m   (then anchored as usual)
    loss  = Σ_battles −[y log σ(logit) + (1 − y) log(1 − σ(logit))] + 0.25 · ‖(w, β)‖²,  y ∈ {1, ½, 0}
This is Arena's `construct_style_matrices` + sklearn `LogisticRegression(fit_intercept=False)`
(C = 1 on battles duplicated, a tie as one win each way) written as one summed loss. It is strictly
convex, so Newton's method converges to the same optimum in a few steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Arena's conv_metadata fields, in its order: (a-side field, b-side field) per element.
STYLE_ELEMENTS = ("sum_assistant_tokens", "header_count", "list_count", "bold_count")
STYLE_FIELDS = (
    ("sum_assistant_a_tokens", "sum_assistant_b_tokens"),
    ("header_count_a", "header_count_b"),
    ("list_count_a", "list_count_b"),
    ("bold_count_a", "bold_count_b"),
)
STYLE_PENALTY = 0.25  # on ‖(w, β)‖², w in base-10 units (Elo / 400)
LN10 = float(np.log(10.0))


@dataclass(frozen=True, eq=False)
class StyleBattles:
    """One row per battle: model indices, outcome for model_a (1, ½, 0) and raw style counts per side."""

    models: tuple[str, ...]
    model_a: np.ndarray  # (m,)
    model_b: np.ndarray  # (m,)
    y: np.ndarray  # (m,)
    style_a: np.ndarray  # (m, k)
    style_b: np.ndarray  # (m, k)


@dataclass(frozen=True)
class StyleFit:
    theta: np.ndarray  # (n,) natural-log units (= ln10 · w), mean zero
    beta: np.ndarray  # (k,) per z-scored style feature
    iterations: int
    converged: bool


def style_differences(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a, b: (battles, k) raw counts per side -> z-scored d (battles, k), the mean and std used.
    A feature that never varies gets std 1 (its column is all zero and its β stays 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = (a - b) / (a + b + 1.0)
    mean, std = d.mean(axis=0), d.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (d - mean) / std, mean, std


def fit_style_bt(
    model_a: np.ndarray,
    model_b: np.ndarray,
    y: np.ndarray,
    features: np.ndarray,
    n_models: int,
    *,
    weights: np.ndarray | None = None,
    penalty: float = STYLE_PENALTY,
    x0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> StyleFit:
    """Minimise Σ c·logloss(y, σ(ln10(w_a − w_b) + Dβ)) + penalty·‖(w, β)‖² by Newton's method.
    model_a/model_b: (m,) indices; y: (m,) in {0, ½, 1}; features: (m, k) z-scored; weights c:
    (m,) battle multiplicities (a bootstrap resample), default 1."""
    model_a, model_b = np.asarray(model_a), np.asarray(model_b)
    m, k = features.shape
    c = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    n = n_models
    x = np.zeros(n + k) if x0 is None else np.array(x0, dtype=np.float64)
    ridge = 2.0 * penalty

    def loss_at(params: np.ndarray) -> float:
        z = LN10 * (params[model_a] - params[model_b]) + features @ params[n:]
        # −[y log σ(z) + (1 − y) log σ(−z)] = softplus(z) − y z
        return float((c * (np.logaddexp(0.0, z) - y * z)).sum() + penalty * (params @ params))

    value = loss_at(x)
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007  (the count is read after the loop)
        w, beta = x[:n], x[n:]
        z = LN10 * (w[model_a] - w[model_b]) + features @ beta
        p = 1.0 / (1.0 + np.exp(-z))
        r = c * (p - y)
        s = c * p * (1.0 - p)
        grad = np.empty(n + k)
        grad[:n] = LN10 * (np.bincount(model_a, r, n) - np.bincount(model_b, r, n)) + ridge * w
        grad[n:] = features.T @ r + ridge * beta
        hess = np.zeros((n + k, n + k))
        # rating block: ln10² · weighted Laplacian of the battle graph
        pair = np.bincount(model_a * n + model_b, s, n * n).reshape(n, n)
        pair = pair + pair.T
        hess[:n, :n] = LN10**2 * (np.diag(pair.sum(axis=1)) - pair)
        sf = s[:, None] * features
        cross = np.zeros((n, k))
        np.add.at(cross, model_a, sf)
        np.subtract.at(cross, model_b, sf)
        hess[:n, n:] = LN10 * cross
        hess[n:, :n] = hess[:n, n:].T
        hess[n:, n:] = features.T @ sf
        hess[np.arange(n + k), np.arange(n + k)] += ridge
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        for _ in range(30):
            candidate = x - scale * step
            new = loss_at(candidate)
            if new <= value + 1e-12 * abs(value):
                break
            scale *= 0.5
        x, value = candidate, new
        if np.abs(scale * step).max() < tol:
            converged = True
            break
    theta = LN10 * x[:n]
    return StyleFit(theta=theta - theta.mean(), beta=x[n:].copy(), iterations=iterations, converged=converged)


# --- features from text (for votes cast in prefloop, where no conv_metadata exists) ---------------
CODE_BLOCK = re.compile(r"```[^`]*```")
HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
ORDERED_ITEM = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
UNORDERED_ITEM = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
BOLD = (re.compile(r"\*\*[^*\n]+\*\*"), re.compile(r"__[^_\n]+__"))
TOKEN = re.compile(r"\w+|[^\w\s]")


def text_style(text: str) -> tuple[int, int, int, int]:
    """(tokens, headers, list items, bold spans) of one response, Markdown counted as Arena does
    (code blocks removed first). Tokens are word and punctuation pieces, a tokenizer-free
    stand-in for Arena's tiktoken counts: only ratios of the two sides enter the fit."""
    prose = CODE_BLOCK.sub("", text)
    return (
        len(TOKEN.findall(text)),
        len(HEADER.findall(prose)),
        len(ORDERED_ITEM.findall(prose)) + len(UNORDERED_ITEM.findall(prose)),
        sum(len(p.findall(prose)) for p in BOLD),
    )
