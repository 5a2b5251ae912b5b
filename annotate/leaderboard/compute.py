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
from annotate.leaderboard.style import (
    STYLE_ELEMENTS,
    STYLE_PENALTY,
    StyleBattles,
    fit_style_bt,
    style_differences,
)

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
    style_battles: per-battle rows with style counts, needed for options.style_control."""
    models = list(counts.models)
    anchor_index = None
    if options.anchor is not None and counts.total:
        if options.anchor[0] not in models:
            raise LeaderboardInputError(f"anchor model {options.anchor[0]!r} has no battles here; models: {', '.join(models)}")
        anchor_index = models.index(options.anchor[0])
    anchor_rating = options.anchor[1] if options.anchor else ELO_MEAN
    warnings: list[str] = []
    if counts.total == 0 or counts.n_models < 2:
        return LeaderboardResult(
            ratings=[], method={"model": "bradley-terry", "battles": counts.total, **(source or {})}, models=[],
            win_rate=[], battle_counts=[], warnings=["not enough data: no battles between two different models yet"],
        )
    method: dict = {
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

    _warn_about_groups(counts, method, warnings)
    if options.style_control:
        if style_battles is None:
            raise LeaderboardInputError("style control needs per-battle style counts")
        theta, samples, coefficients = _style_fit(style_battles, options, progress, method, warnings)
        models_style = list(style_battles.models)
        # style battles may be indexed differently: align to counts' (sorted) model order
        position = [models_style.index(m) for m in models]
        theta = theta[position]
        samples = samples[:, position] if samples is not None else None
    else:
        theta, ridge = _bt_fit(counts, method, warnings)
        samples = None
        coefficients = None
        if options.bootstrap:
            samples, fallback = boot.bootstrap_theta(
                counts, rounds=options.bootstrap, seed=options.seed, theta0=theta, ridge=ridge, progress=progress
            )
            method["bootstrap_rounds_with_ridge"] = fallback

    ratings = to_elo(theta, anchor_index=anchor_index, anchor_rating=anchor_rating)
    if samples is not None:
        lower, upper = boot.percentile_interval(to_elo(samples, anchor_index=anchor_index, anchor_rating=anchor_rating))
        ranks = boot.ci_rank(lower, upper)
    else:
        lower = upper = None  # type: ignore[assignment]  # no bootstrap: no interval
        ranks = 1 + (ratings[None, :] > ratings[:, None]).sum(axis=1)

    online = None
    if options.online_elo:
        if ordered_battles is None:
            raise LeaderboardInputError("online Elo needs the battles in order")
        online = online_elo(ordered_battles)
        method["online_elo"] = f"K={ELO_K:g}, initial 1000, battles in time order; tie and both-bad score 0.5"

    per_model = counts.battles_per_model()
    order = np.argsort(-ratings, kind="stable")
    rows = [
        ModelRating(
            model=models[i], rating=float(ratings[i]),
            lower=None if lower is None else float(lower[i]), upper=None if upper is None else float(upper[i]),
            rank=int(ranks[i]), battles=int(per_model[i]), online_elo=None if online is None else float(online.get(models[i], np.nan)),
        )
        for i in order
    ]
    win_rate = counts.decisive_win_rate()[np.ix_(order, order)]
    battle_counts = counts.battle_matrix()[np.ix_(order, order)]
    return LeaderboardResult(
        ratings=rows,
        method=method,
        models=[models[i] for i in order],
        win_rate=[[None if np.isnan(v) else float(v) for v in row] for row in win_rate],
        battle_counts=battle_counts.tolist(),
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
        warnings.append(f"The rating fit stopped after {fit.iterations} Newton steps without converging; treat the ratings as rough.")
    return fit.theta, ridge


def _style_fit(battles: StyleBattles, options: LeaderboardOptions, progress, method: dict, warnings: list[str]):
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
