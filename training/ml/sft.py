"""A plain supervised fine-tuning loop for causal LMs (demo policy build and best-of-N).

Loss: mean over masked tokens of −log π(y_t | y_<t), masks marking the tokens that are learnt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from training.ml.results import TrainingStopped


def masked_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """L = −Σ_t m_t log softmax(logits_{t−1})[x_t] / Σ_t m_t   # (B, T, V), (B, T), (B, T) -> ()"""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    target = input_ids[:, 1:]  # (B, T-1)
    mask = loss_mask[:, 1:].float()  # (B, T-1)
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return -(token_logp * mask).sum() / mask.sum().clamp(min=1.0)


def masked_token_loss(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor
) -> torch.Tensor:
    """masked_lm_loss, computing vocabulary logits only where a token is learnt   # (B, T) x3 -> ()

    The output projection over a 30k vocabulary dominates a tiny model's cost; prompt and padding
    positions need none. Uses the decoder's last hidden state and the output embedding, which is
    exactly the LM head for GPT-2/Llama-style models (no logit soft-capping).
    """
    lm = (
        model.get_base_model() if hasattr(model, "get_base_model") else model
    )  # a peft model: LoRA layers stay in place
    hidden = lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    predict = loss_mask[:, 1:].bool()  # (B, T-1): position t-1 predicts token t
    selected = hidden[:, :-1][predict]  # (N, H)
    logits = lm.get_output_embeddings()(selected).float()  # (N, V)
    return F.cross_entropy(logits, input_ids[:, 1:][predict])


def collate_right(
    examples: Sequence[tuple[list[int], list[int]]], pad_token_id: int, device
) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, loss_mask), right-padded to the longest example   # each (B, T)"""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    loss_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (seq, mask) in enumerate(examples):
        ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
        loss_mask[row, : len(seq)] = torch.tensor(mask)
    return ids.to(device), attention.to(device), loss_mask.to(device)


def sft_train(
    model,
    examples: Sequence[tuple[list[int], list[int]]],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    pad_token_id: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict]:
    """Train `model` in place for `steps` AdamW steps over seeded shuffled epochs; returns the loss curve.

    Learning rate: linear warm-up over warmup_steps, then cosine decay to 10% of lr.
    """
    device = next(model.parameters()).device
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95)
    )

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress_ = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    rng = random.Random(seed)
    order: list[int] = []
    curve = []
    model.train()
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        batch = [examples[i] for i in order[:batch_size]]
        del order[:batch_size]
        ids, attention, loss_mask = collate_right(batch, pad_token_id, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = masked_token_loss(model, ids, attention, loss_mask)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        point = {"step": step, "loss": loss.item(), "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0]}
        curve.append(point)
        if progress:
            progress(step, steps, point)
        if should_stop and should_stop():
            raise TrainingStopped(f"stopped at step {step}")
    model.eval()
    return curve


@torch.inference_mode()
def masked_perplexity(
    model, examples: Sequence[tuple[list[int], list[int]]], *, pad_token_id: int, batch_size: int = 16
) -> tuple[float | None, int]:
    """(exp(−Σ log π(y_t | y_<t) / N), N) over the masked tokens of `examples`; (None, 0) without any."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        ids, attention, loss_mask = collate_right(examples[start : start + batch_size], pad_token_id, device)
        n = int(loss_mask[:, 1:].sum())
        if n:
            total += float(masked_token_loss(model, ids, attention, loss_mask)) * n
            count += n
    if was_training:
        model.train()
    return (math.exp(total / count), count) if count else (None, 0)
