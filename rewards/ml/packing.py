"""Packed (unpadded) batches for BERT-family reward models: every real token computed once, no pad token.

The padded path (data.PairCollator) feeds a (2B, T) tensor, T the longest of the batch's 2B
sequences: every linear layer also runs over the padding. Here the 2B sequences of a batch are
laid end to end in one row of N = Σ lengths tokens, with position ids restarting at 0 for each
sequence. The linear layers, layer norms and GELUs (≈ 90 % of the FLOPs at these lengths) then
run over the N real tokens only; attention alone is laid out per sequence, (2B, heads, L, d)
gathered from the row with a key mask, and scattered back, so no token attends across a
sequence boundary and each reward equals the padded path's (tests/rewards/test_packing.py).

Supported: BERT-family sequence classifiers (MiniLM, the default backbone), alone or under a
peft LoRA wrapper, in one process. Anything else (decoders, DDP) stays on the padded path:
`supports_packing` says which.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rewards.ml.data import EncodedPair

ATTENTION_NAME = "prefloop_packed"
_SEGMENTS_KEY = "prefloop_segments"


@dataclass
class PackedPairCollator:
    """EncodedPairs → one packed row: chosen sequences first, then rejected ones (2B segments).

    Keys: input_ids, token_type_ids (if the template has them), position_ids (1, N);
    pack_gather (2B, L): the row position of each segment's token, N (a zero slot) past its end;
    pack_keys (2B, 1, 1, L): True on real tokens; pack_flat (N,): each token's slot in the
    flattened (2B·L) layout; pack_first (2B,): each segment's first token (BERT's [CLS]);
    margin, tie, index (B,); real_tokens, slot_tokens: token counts (packed: equal).
    """

    pad_token_id: int = 0

    def __call__(self, batch: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
        sequences = [p.chosen for p in batch] + [p.rejected for p in batch]
        types = [p.chosen_types for p in batch] + [p.rejected_types for p in batch]
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        total, width = int(lengths.sum()), int(lengths.max())
        starts = torch.cumsum(lengths, 0) - lengths
        columns = torch.arange(width)
        real = columns[None, :] < lengths[:, None]  # (2B, L)
        gather = torch.where(real, starts[:, None] + columns[None, :], torch.full_like(real, total, dtype=torch.long))
        slots = torch.arange(len(sequences) * width).view(len(sequences), width)
        out = {
            "input_ids": torch.tensor([t for s in sequences for t in s], dtype=torch.long)[None],
            "position_ids": torch.cat([torch.arange(n) for n in lengths.tolist()])[None],
            "pack_gather": gather,
            "pack_keys": real[:, None, None, :],
            "pack_flat": slots[real],
            "pack_first": starts,
            "margin": torch.tensor([p.margin for p in batch], dtype=torch.float),
            "tie": torch.tensor([p.tie for p in batch], dtype=torch.bool),
            "index": torch.tensor([p.index for p in batch], dtype=torch.long),
            "real_tokens": torch.tensor(total),
            "slot_tokens": torch.tensor(total),
        }
        if types[0] is not None:
            out["token_type_ids"] = torch.tensor([t for s in types for t in (s or [])], dtype=torch.long)[None]
        return out


class _ToSlots(torch.autograd.Function):
    """Packed tokens → per-segment slots (zeros past each end)   # (N, h, d) -> (S·L, h, d)

    The indices are unique, so the backward pass is a gather (index_select), not an accumulating scatter.
    """

    @staticmethod
    def forward(ctx: Any, tokens: torch.Tensor, flat: torch.Tensor, slots: int) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return tokens.new_zeros(slots, *tokens.shape[1:]).index_copy_(0, flat, tokens)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (flat,) = ctx.saved_tensors
        return grad.index_select(0, flat), None, None


class _FromSlots(torch.autograd.Function):
    """Per-segment slots → packed tokens   # (S·L, h, d) -> (N, h, d); backward: a copy into zeros, no scatter-add."""

    @staticmethod
    def forward(ctx: Any, slots: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.slots = slots.shape[0]
        return slots.index_select(0, flat)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        return grad.new_zeros(ctx.slots, *grad.shape[1:]).index_copy_(0, flat, grad.contiguous()), None


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA per segment of the packed row   # (1, h, N, d) x3 -> (1, N, h, d)"""
    segments = kwargs[_SEGMENTS_KEY]
    keys, flat = segments["pack_keys"], segments["pack_flat"]
    count, width = keys.shape[0], keys.shape[-1]
    heads, dim = query.shape[1], query.shape[3]

    def per_segment(x: torch.Tensor) -> torch.Tensor:  # (1, h, N, d) -> (S, h, L) x d, laid out (S, L, h, d)
        slots = _ToSlots.apply(x[0].transpose(0, 1), flat, count * width)
        return slots.view(count, width, heads, dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(
        per_segment(query), per_segment(key), per_segment(value), attn_mask=keys, dropout_p=dropout, scale=scaling
    )  # (S, h, L, d)
    out = _FromSlots.apply(out.transpose(1, 2).reshape(count * width, heads, dim), flat)  # (N, h, d)
    return out[None], None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None  # the packed attention masks by segment itself


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, packed_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, _no_mask)


def _classifier(model: torch.nn.Module) -> torch.nn.Module:
    from rewards.ml.score import _classifier as unwrap

    return unwrap(model)


def supports_packing(model: torch.nn.Module) -> bool:
    """A BERT-family sequence classifier (pooled [CLS] → classifier), peft-wrapped or not; not under DDP."""
    from transformers import BertForSequenceClassification

    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return False
    classifier = _classifier(model)
    return isinstance(classifier, BertForSequenceClassification) and classifier.bert.pooler is not None


@contextmanager
def _attention_swapped(config: Any) -> Iterator[None]:
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous


def packed_sequence_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """r per segment, in float32   # packed batch -> (2B,)"""
    classifier = _classifier(model)
    _register()
    segments = {k: batch[k] for k in ("pack_keys", "pack_flat")}
    with _attention_swapped(classifier.config):
        hidden = classifier.bert(
            input_ids=batch["input_ids"],
            token_type_ids=batch.get("token_type_ids"),
            position_ids=batch["position_ids"],
            attention_mask=None,
            **{_SEGMENTS_KEY: segments},
        ).last_hidden_state  # (1, N, H)
    first = hidden[0, batch["pack_first"]][:, None, :]  # (S, 1, H): each segment's [CLS]
    pooled = classifier.bert.pooler(first)
    return classifier.classifier(classifier.dropout(pooled)).squeeze(-1).float()


__all__ = ["PackedPairCollator", "packed_attention", "packed_sequence_scores", "supports_packing"]
