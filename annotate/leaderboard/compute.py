"""Leaderboard from collapsed battles: BT ratings, bootstrap CIs, CI-based rank, optional online Elo
and style control. One entry point for the command, the REST API and the benchmark."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.sparse.csgraph import connected_components

from annotate.leaderboard import bootstrap as boot
from annotate.leaderboard.bt import ELO_MEAN, FALLBACK_RIDGE, fit_bt, mle_exists, to_elo
from annotate.leaderboard.counts import PairCounts
from annotate.leaderboard.elo import ELO_K, online_elo
from annotate.leaderboard.style import STYLE_ELEMENTS, STYLE_PENALTY, StyleBattles, fit_style_bt, style_differences

DEFAULT_ROUNDS = 100
DEFAULT_SEED = 0


@dataclass(frozen=True)
class LeaderboardOptions:
    bootstrap: int = DEFAULT_ROUNDS  # rounds; 0: no intervals
    seed: int = DEFAULT_SEED
    anchor: tuple[str, float] | None = None  # (model, rating); None: mean rating 1000
    exclude_ties: bool = False
    style_control: bool = False
    online_elo: bool = False


@dataclass(frozen=True)
class ModelRating:
    model: str
    rating: float
    lower: float | None  # bootstrap percentile bounds (2.5 %, 97.5 %)
    upper: float | None
    rank: int  # 1 + number of models whose lower bound exceeds this one's upper bound
    battles: int
    online_elo: float | None = None


@dataclass(frozen=True)
class LeaderboardResult:
    ratings: list[ModelRating]  # best first
    method: dict  # how every number was computed
    models: list[str]  # order of the matrices below (= ratings order)
    win_rate: list[list[float | None]]  # row beats column, among decisive battles (ties left out)
    battle_counts: list[list[int]]  # battles between row and column, ties included
    style_coefficients: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class LeaderboardInputError(ValueError):
    """Options that do not fit the data (an anchor model that never battled, no battles at all)."""


def compute_leaderboard(
    counts: PairCounts,
    *,
    options: LeaderboardOptions = LeaderboardOptions(),
    ordered_battles: Iterable[tuple[str, str, str]] | None = None,
    style_battles: StyleBattles | None = None,
    source: dict | None = None,
    progress: Callable[[int], None] | None = None,
) -> LeaderboardResult:
    """counts: battles collapsed per pair (ties already dropped when options.exclude_ties);
    ordered_battles: the same battles in time order, needed for options.online_elo;
    style_battles: per-battle rows with style counts, needed for options.style_control.

    In four steps: the fit with its bootstrap samples (θ, natural units), the Elo scale with
    bounds and ranks, online Elo, and the table (best first) with its matrices."""
    anchor_index = _anchor_index(counts, options)
    if counts.total == 0 or counts.n_models < 2:
        return LeaderboardResult(
            ratings=[],
            method={"model": "bradley-terry", "battles": counts.total, **(source or {})},
            models=[],
            win_rate=[],
            battle_counts=[],
            warnings=["not enough data: no battles between two different models yet"],
        )
    method = _method(counts, options, source)
    warnings: list[str] = []
    _warn_about_groups(counts, method, warnings)
    theta, samples, coefficients = _fit_with_samples(counts, options, style_battles, progress, method, warnings)
    anchor_rating = options.anchor[1] if options.anchor else ELO_MEAN
    scale = _on_elo_scale(theta, samples, anchor_index=anchor_index, anchor_rating=anchor_rating)
    online = _online_elo(options, ordered_battles, method)
    return _table(counts, scale, online, method=method, coefficients=coefficients, warnings=warnings)


@dataclass(frozen=True)
class _EloScale:
    ratings: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    ranks: np.ndarray


def _anchor_index(counts: PairCounts, options: LeaderboardOptions) -> int | None:
    if options.anchor is None or not counts.total:
        return None
    models = list(counts.models)
    if options.anchor[0] not in models:
        raise LeaderboardInputError(
            f"anchor model {options.anchor[0]!r} has no battles here; models: {', '.join(models)}"
        )
    return models.index(options.anchor[0])


def _method(counts: PairCounts, options: LeaderboardOptions, source: dict | None) -> dict:
    """How every number is computed; the fit steps add to it (estimator, fallbacks)."""
    anchor_rating = options.anchor[1] if options.anchor else ELO_MEAN
    return {
        "model": "bradley-terry",
        "estimator": "maximum likelihood, unregularised",
        "scale": "elo: P(i beats j) = 1 / (1 + 10^((R_j - R_i) / 400))",
        "centre": f"{options.anchor[0]} = {anchor_rating:g}" if options.anchor else "mean rating 1000",
        "ties": "excluded" if options.exclude_ties else "tie and both-bad count as half a win each way",
        "battles": counts.total,
        "ties_counted": 0 if options.exclude_ties else counts.ties,
        "self_battles_ignored": counts.self_battles,
        "bootstrap_rounds": options.bootstrap,
        "seed": options.seed,
        "ci": "bootstrap percentile 2.5 % / 97.5 % (multinomial resampling of battles)" if options.bootstrap else None,
        "rank": "1 + number of models whose lower bound exceeds this one's upper bound",
        **(source or {}),
    }


def _fit_with_samples(
    counts: PairCounts,
    options: LeaderboardOptions,
    style_battles: StyleBattles | None,
    progress: Callable[[int], None] | None,
    method: dict,
    warnings: list[str],
) -> tuple[np.ndarray, np.ndarray | None, dict[str, float] | None]:
    """θ in counts' model order, the (rounds, n) bootstrap θ (None without bootstrap), and the
    style coefficients (None without style control)."""
    if options.style_control:
        if style_battles is None:
            raise LeaderboardInputError("style control needs per-battle style counts")
        theta, samples, coefficients = _style_fit(style_battles, options, progress, method, warnings)
        # style battles may be indexed differently: align to counts' (sorted) model order
        position = [list(style_battles.models).index(m) for m in counts.models]
        return theta[position], None if samples is None else samples[:, position], coefficients
    theta, ridge = _bt_fit(counts, method, warnings)
    if not options.bootstrap:
        return theta, None, None
    samples, fallback = boot.bootstrap_theta(
        counts, rounds=options.bootstrap, seed=options.seed, theta0=theta, ridge=ridge, progress=progress
    )
    method["bootstrap_rounds_with_ridge"] = fallback
    return theta, samples, None


def _on_elo_scale(
    theta: np.ndarray, samples: np.ndarray | None, *, anchor_index: int | None, anchor_rating: float
) -> _EloScale:
    """Ratings, percentile bounds and CI-based ranks; without samples, ranks by rating alone."""
    ratings = to_elo(theta, anchor_index=anchor_index, anchor_rating=anchor_rating)
    if samples is None:
        return _EloScale(ratings, None, None, 1 + (ratings[None, :] > ratings[:, None]).sum(axis=1))
    lower, upper = boot.percentile_interval(to_elo(samples, anchor_index=anchor_index, anchor_rating=anchor_rating))
    return _EloScale(ratings, lower, upper, boot.ci_rank(lower, upper))


def _online_elo(
    options: LeaderboardOptions, ordered_battles: Iterable[tuple[str, str, str]] | None, method: dict
) -> dict | None:
    if not options.online_elo:
        return None
    if ordered_battles is None:
        raise LeaderboardInputError("online Elo needs the battles in order")
    method["online_elo"] = f"K={ELO_K:g}, initial 1000, battles in time order; tie and both-bad score 0.5"
    return online_elo(ordered_battles)


def _table(
    counts: PairCounts,
    scale: _EloScale,
    online: dict | None,
    *,
    method: dict,
    coefficients: dict[str, float] | None,
    warnings: list[str],
) -> LeaderboardResult:
    """Rows best first (stable on ties), and the win-rate and battle matrices in the same order."""
    models = list(counts.models)
    per_model = counts.battles_per_model()
    order = np.argsort(-scale.ratings, kind="stable")

    def bound(values: np.ndarray | None, i: int) -> float | None:
        return None if values is None else float(values[i])

    rows = [
        ModelRating(
            model=models[i],
            rating=float(scale.ratings[i]),
            lower=bound(scale.lower, i),
            upper=bound(scale.upper, i),
            rank=int(scale.ranks[i]),
            battles=int(per_model[i]),
            online_elo=None if online is None else float(online.get(models[i], np.nan)),
        )
        for i in order
    ]
    win_rate = counts.decisive_win_rate()[np.ix_(order, order)]
    return LeaderboardResult(
        ratings=rows,
        method=method,
        models=[models[i] for i in order],
        win_rate=[[None if np.isnan(v) else float(v) for v in row] for row in win_rate],
        battle_counts=counts.battle_matrix()[np.ix_(order, order)].tolist(),
        style_coefficients=coefficients,
        warnings=warnings,
    )


def comparison_groups(counts: PairCounts) -> list[list[str]]:
    """The models split by who ever battled whom (connected parts of the battle graph), largest first."""
    count, label = connected_components(counts.battle_matrix() > 0, directed=False)
    groups = [[m for m, g in zip(counts.models, label) if g == k] for k in range(count)]
    return sorted(groups, key=lambda g: (-len(g), g))


def _warn_about_groups(counts: PairCounts, method: dict, warnings: list[str]) -> None:
    groups = comparison_groups(counts)
    method["comparison_groups"] = len(groups)
    if len(groups) > 1:
        listed = " | ".join(", ".join(g) for g in groups)
        warnings.append(
            f"The models fall into {len(groups)} groups that never battled each other ({listed}); each group is "
            "centred on the same mean, so ratings compare only within a group."
        )


def _bt_fit(counts: PairCounts, method: dict, warnings: list[str]) -> tuple[np.ndarray, float]:
    """The headline fit: the plain MLE when it is finite (Arena's numbers), else the weak-ridge MAP,
    with the reason in `warnings`. Returns θ and the ridge used."""
    wins = counts.win_matrix()
    exists = mle_exists(wins)
    ridge = 0.0 if exists else FALLBACK_RIDGE
    fit = fit_bt(wins, ridge=ridge)
    method["mle_exists"] = exists
    if not exists:
        method["estimator"] = f"maximum a posteriori, ridge {ridge:g} on θ (the MLE is infinite)"
        warnings.append(
            "Some model never lost (or never won) against a part of the field, so the maximum-likelihood "
            "ratings are infinite; a weak ridge keeps them finite. Collect more battles before reading them."
        )
    if not fit.converged:
        warnings.append(
            f"The rating fit stopped after {fit.iterations} Newton steps without converging; treat the ratings as rough."
        )
    return fit.theta, ridge


def _style_fit(
    battles: StyleBattles,
    options: LeaderboardOptions,
    progress: Callable[[int], None] | None,
    method: dict,
    warnings: list[str],
) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
    features, _, std = style_differences(battles.style_a, battles.style_b)
    n = len(battles.models)
    fit = fit_style_bt(battles.model_a, battles.model_b, battles.y, features, n)
    method.update(
        model="bradley-terry with style control",
        estimator=f"penalised likelihood: summed log-loss + {STYLE_PENALTY:g}·‖(w, β)‖² (w = rating / 400)",
        style_features="d = (a - b) / (a + b + 1) per element, z-scored over battles (population std)",
        style_battles=len(battles.y),
    )
    constant = [STYLE_ELEMENTS[k] for k in np.flatnonzero(np.asarray(std) == 1.0) if features[:, k].std() == 0]
    if constant:
        warnings.append(f"style elements that never differ between sides were left out: {', '.join(constant)}")
    samples = None
    if options.bootstrap:
        rng = np.random.default_rng(options.seed)
        m = len(battles.y)
        samples = np.empty((options.bootstrap, n))
        start = np.concatenate([fit.theta / np.log(10.0), fit.beta])
        for r in range(options.bootstrap):
            weights = np.bincount(rng.integers(0, m, size=m), minlength=m).astype(np.float64)
            samples[r] = fit_style_bt(
                battles.model_a, battles.model_b, battles.y, features, n, weights=weights, x0=start
            ).theta
            if progress:
                progress(r + 1)
    return fit.theta, samples, {name: float(b) for name, b in zip(STYLE_ELEMENTS, fit.beta)}
