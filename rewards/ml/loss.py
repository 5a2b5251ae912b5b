"""Bradley-Terry reward-model losses: small, pure functions of reward tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None) -> torch.Tensor:
    """L = −mean_i log σ(r(x_i, y_w,i) − r(x_i, y_l,i) − m_i)   # (B,), (B,), (B,)|None -> ()

    P(y_w ≻ y_l | x) = σ(r_w − r_l) is the Bradley-Terry model; the optional margin m_i (e.g. from
    vote strength, as in Llama 2's reward model) asks for a larger gap on clearer preferences.
    """
    delta = r_chosen - r_rejected
    if margin is not None:
        delta = delta - margin
    return -F.logsigmoid(delta).mean()


def tie_loss(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """L = −mean_i [½ log σ(r_a − r_b) + ½ log σ(r_b − r_a)]   # (B,), (B,) -> ()

    A tie is a Bradley-Terry observation with target probability ½ (half a win each way, the
    leaderboard's convention): minimal, at log 2, when r_a = r_b. It equals the mean of the BT loss
    over both orders with no margin, i.e. the export's ties="both-orders" rows, at half the compute.
    """
    delta = r_a - r_b
    return -0.5 * (F.logsigmoid(delta) + F.logsigmoid(-delta)).mean()


def preference_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, *, margin: torch.Tensor | None = None, tie: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of the BT term for preferences and the tie term for ties   # (B,), (B,) -> ()."""
    delta = r_chosen - r_rejected
    shifted = delta - margin if margin is not None else delta
    per_pair = -F.logsigmoid(shifted)
    if tie is not None and bool(tie.any()):
        per_pair = torch.where(tie, -0.5 * (F.logsigmoid(delta) + F.logsigmoid(-delta)), per_pair)
    return per_pair.mean()
