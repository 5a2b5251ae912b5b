"""Per-round charts of the loop: reward vs KL (the over-optimisation instrument), length and win rates."""

from __future__ import annotations

from django.utils.safestring import SafeString

from rewards.charts import Series, line_chart
from training.models import Round


def _points(rounds: list[Round], key: str, field: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for r in rounds:
        value = (r.metrics.get(key) or {}).get(field)
        if value is not None:
            out.append((r.number, value))
    return out


def loop_charts(rounds: list[Round]) -> dict[str, SafeString]:
    """rounds: oldest first. Round 0 of each series is the starting policy (evaluated before round 1's update)."""
    done = [r for r in rounds if r.metrics.get("eval")]
    first = done[0] if done else None
    evaluations = [first.metrics["eval_before"]] if first and first.metrics.get("eval_before") else []
    evaluations += [r.metrics["eval"] for r in done]
    kl_points = [e for e in evaluations if e.get("kl_to_reference") is not None]
    reward_kl = [(e["kl_to_reference"], e.get("mean_reward")) for e in kl_points]
    # ± 2 standard errors of the KL estimate (≈ 95 %); older rounds have no standard error
    kl_errors = [2 * e["kl_to_reference_se"] if e.get("kl_to_reference_se") is not None else None for e in kl_points]

    def with_start(field: str) -> list[tuple[float, float]]:
        head = [(0, first.metrics["eval_before"].get(field))] if first and first.metrics.get("eval_before") else []
        return head + _points(done, "eval", field)

    human = [
        (r.number, (r.metrics.get("human_win_rate") or {}).get("win_rate"))
        for r in done
        if r.metrics.get("human_win_rate")
    ]
    return {
        "reward_kl": line_chart(
            [Series("policy after each round", reward_kl, x_errors=kl_errors)],
            title="mean reward vs KL(π‖π_ref)",
            x_label="KL to reference (nats, ± 2 s.e.)",
        ),
        "reward": line_chart(
            [Series("mean reward (held-out prompts)", with_start("mean_reward"))],
            title="reward-model score of fresh samples",
            x_label="round",
        ),
        "length": line_chart(
            [Series("tokens", with_start("mean_length_tokens"))],
            title="mean response length (verbosity drift)",
            x_label="round",
        ),
        "win_rate": line_chart(
            [
                Series("vs previous (RM)", _points(done, "eval", "win_rate_vs_previous")),
                Series("vs reference (RM)", _points(done, "eval", "win_rate_vs_reference")),
                Series("vs previous (humans)", human),  # type: ignore[arg-type]  # a None y is skipped by the chart
            ],
            title="win rate",
            x_label="round",
            y_range=(0.0, 1.0),
        ),
    }
