"""Per-round charts of the loop: reward vs KL (the over-optimisation instrument), length and win rates."""
from __future__ import annotations

from django.utils.safestring import SafeString

from rewards.charts import Series, line_chart, smooth
from training.models import Round


def _points(rounds: list[Round], key: str, field: str) -> list[tuple[float, float]]:
    out = []
    for r in rounds:
        value = (r.metrics.get(key) or {}).get(field)
        if value is not None:
            out.append((r.number, value))
    return out


def loop_charts(rounds: list[Round]) -> dict[str, SafeString]:
    """rounds: oldest first. Round 0 of each series is the starting policy (evaluated before round 1's update)."""
    done = [r for r in rounds if r.metrics.get("eval")]
    first = done[0] if done else None
    reward_kl = []
    if first and first.metrics.get("eval_before"):
        before = first.metrics["eval_before"]
        reward_kl.append((before.get("kl_to_reference") or 0.0, before.get("mean_reward")))
    reward_kl += [(r.metrics["eval"].get("kl_to_reference"), r.metrics["eval"].get("mean_reward")) for r in done
                  if r.metrics["eval"].get("kl_to_reference") is not None]

    def with_start(field: str) -> list[tuple[float, float]]:
        head = [(0, first.metrics["eval_before"].get(field))] if first and first.metrics.get("eval_before") else []
        return head + _points(done, "eval", field)

    human = [(r.number, (r.metrics.get("human_win_rate") or {}).get("win_rate")) for r in done if r.metrics.get("human_win_rate")]
    return {
        "reward_kl": line_chart([Series("policy after each round", reward_kl)], title="mean reward vs KL(π‖π_ref)",
                                x_label="KL to reference (nats)"),
        "reward": line_chart([Series("mean reward (held-out prompts)", with_start("mean_reward"))],
                             title="reward-model score of fresh samples", x_label="round"),
        "length": line_chart([Series("tokens", with_start("mean_length_tokens"))],
                             title="mean response length (verbosity drift)", x_label="round"),
        "win_rate": line_chart([
            Series("vs previous (RM)", _points(done, "eval", "win_rate_vs_previous")),
            Series("vs reference (RM)", _points(done, "eval", "win_rate_vs_reference")),
            Series("vs previous (humans)", human),
        ], title="win rate", x_label="round", y_range=(0.0, 1.0)),
    }


def update_chart(curve: list[dict]) -> SafeString:
    loss = smooth([(p.get("step", i), p.get("loss")) for i, p in enumerate(curve or [])], window=5)
    return line_chart([Series("loss (smoothed)", loss)], title="update loss", x_label="step")
