"""System leaderboard: Bradley-Terry ratings over the models that wrote completions (DESIGN.md §4).

The math modules (counts, bt, bootstrap, elo, style, battles, compute, plots) are plain
numpy/scipy and never import Django; `data` is the bridge that aggregates a project's votes in SQL.
"""

from annotate.leaderboard.battles import BattleFileError, BattleLog, load_battles
from annotate.leaderboard.compute import LeaderboardOptions, LeaderboardResult, ModelRating, compute_leaderboard
from annotate.leaderboard.counts import PairCounts

__all__ = [
    "BattleFileError",
    "BattleLog",
    "LeaderboardOptions",
    "LeaderboardResult",
    "ModelRating",
    "PairCounts",
    "compute_leaderboard",
    "load_battles",
]
