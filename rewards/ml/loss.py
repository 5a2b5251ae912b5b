"""Bradley-Terry reward-model losses: small, pure functions of reward tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def tie_loss(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """L = −mean_i [½ log σ(r_a − r_b) + ½ log σ(r_b − r_a)]   # (B,), (B,) -> ()

    A tie is a Bradley-Terry observation with target probability ½ (half a win each way, the
    leaderboard's convention): minimal, at log 2, when r_a = r_b. It equals the mean of the BT loss
    over both orders with no margin, i.e. the export's ties="both-orders" rows, at half the compute.
    """
    delta = r_a - r_b
    return -0.5 * (F.logsigmoid(delta) + F.logsigmoid(-delta)).mean()


def preference_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    tie: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of the BT term for preferences and the tie term for ties   # (B,), (B,) -> ().

    Preferences: L = −log σ(r(x, y_w) − r(x, y_l) − m), the Bradley-Terry model P(y_w ≻ y_l | x) =
    σ(r_w − r_l); the optional margin m (from vote strength, as in Llama 2's reward model) asks for
    a larger gap on clearer preferences. Ties: tie_loss's term, per pair.
    """
    delta = r_chosen - r_rejected
    shifted = delta - margin if margin is not None else delta
    per_pair = -F.logsigmoid(shifted)
    if tie is not None and bool(tie.any()):
        per_pair = torch.where(tie, -0.5 * (F.logsigmoid(delta) + F.logsigmoid(-delta)), per_pair)
    return per_pair.mean()
