"""Token log-probabilities of responses under a causal LM: the one place prompt+response batches are built.

A batch is [left-padded prompt | right-padded response], so every response starts at column P
and position ids come from the attention mask (left padding must not shift positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ResponseBatch:
    input_ids: torch.Tensor  # (B, P+T)
    attention_mask: torch.Tensor  # (B, P+T)
    position_ids: torch.Tensor  # (B, P+T)
    response_ids: torch.Tensor  # (B, T)
    response_mask: torch.Tensor  # (B, T) 1 on response tokens, 0 on padding
    prompt_width: int  # P


def build_batch(
    prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *, pad_token_id: int, device
) -> ResponseBatch:
    width_p = max(len(p) for p in prompt_ids)
    width_r = max(1, max(len(r) for r in response_ids))
    rows = len(prompt_ids)
    ids = torch.full((rows, width_p + width_r), pad_token_id, dtype=torch.long)
    mask = torch.zeros((rows, width_p + width_r), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        ids[i, width_p - len(p) : width_p] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width_p - len(p) : width_p] = 1
        if len(r):
            ids[i, width_p : width_p + len(r)] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width_p : width_p + len(r)] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, position_ids = ids.to(device), mask.to(device), position_ids.to(device)
    return ResponseBatch(ids, mask, position_ids, ids[:, width_p:], mask[:, width_p:], width_p)


def response_logprobs(model, batch: ResponseBatch, *, temperature: float = 1.0, hidden: bool = False):
    """log π(y_t | x, y_<t) for every response column   # -> (B, T) [, hidden states (B, T, H)]

    Logits are divided by `temperature` (the sampling distribution; 1.0 for the model itself).
    With hidden=True also returns the last hidden state at the positions that predict y_t (the
    value head's input). Padding columns hold garbage: multiply by batch.response_mask.
    """
    width_r = batch.response_ids.shape[1]
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=width_r + 1,
        output_hidden_states=hidden,
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()  # (B, T, V): position P-1+t predicts y_t
    if temperature not in (0, 1.0):
        logits = logits / temperature
    logp = torch.gather(F.log_softmax(logits, dim=-1), -1, batch.response_ids.unsqueeze(-1)).squeeze(-1)  # (B, T)
    if not hidden:
        return logp
    states = out.hidden_states[-1][:, -(width_r + 1) : -1]  # (B, T, H)
    return logp, states


@torch.inference_mode()
def sequence_logprobs_ids(model, prompt_ids, response_ids, *, pad_token_id: int, batch_size: int = 16) -> list[float]:
    """Σ_t log π(y_t | x, y_<t) per (prompt ids, response ids) pair."""
    device = next(model.parameters()).device
    totals = []
    for start in range(0, len(prompt_ids), batch_size):
        batch = build_batch(
            prompt_ids[start : start + batch_size],
            response_ids[start : start + batch_size],
            pad_token_id=pad_token_id,
            device=device,
        )
        logp = response_logprobs(model, batch)
        totals += (logp * batch.response_mask).sum(-1).tolist()
    return totals
