"""Batched r(x, y) with a saved reward model, using the training truncation policy and rendering.

Decoder backbones (Llama, Qwen2, Mistral, GPT-2 sequence classifiers) are read at the last real
token, found from the attention mask: HF's own pooling looks for the last token that is not the
pad id, which skips a final eos when pad == eos. Position ids also come from the mask, so left
padding does not shift a row. Encoder backbones (BERT/MiniLM) keep their own pooled output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from rewards.ml.artifact import load_artifact
from rewards.ml.data import build_sequence, chat_template_layout, pair_template, pair_texts, truncate
from rewards.ml.gemm import faster_linear


def _classifier(model):
    """The transformers model inside accelerate/DDP and peft wrappers."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Column of each row's last real token, whatever the padding side   # (B, T) -> (B,)"""
    columns = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (columns * attention_mask.bool()).argmax(-1)


def sequence_scores(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """r per row, in float32   # (B, T) x2 [, (B, T)] -> (B,)

    A decoder classifier's head (`score`) maps every position to a logit; its output is captured
    with a forward hook (so the call still goes through the DDP/peft wrapper) and read at
    last_token_index. Models without a `score` head (encoders) return their logits as they are.
    """
    head = getattr(_classifier(model), "score", None)
    if head is None:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return model(**inputs).logits.squeeze(-1).float()
    captured: dict = {}
    handle = head.register_forward_hook(lambda module, args, output: captured.__setitem__("logits", output))
    try:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    finally:
        handle.remove()
    per_token = captured["logits"][..., 0]  # (B, T)
    rows = torch.arange(per_token.shape[0], device=per_token.device)
    return per_token[rows, last_token_index(attention_mask)].float()


class RewardScorer:
    """Loads an artifact once; `score(prompts, responses)` returns one float per (x, y).

    A prompt is a string or a conversation (list of {role, content}); it is rendered with the
    reward model's own chat template when its tokenizer has one.
    """

    def __init__(
        self,
        folder: Path | None = None,
        *,
        model=None,
        tokenizer=None,
        max_length: int | None = None,
        min_prompt_tokens: int = 64,
        batch_size: int = 32,
        device: str | None = None,
    ):
        meta = {}
        if folder is not None:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            model, tokenizer, meta = load_artifact(folder, device=device)
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.max_length = max_length or meta.get("max_length") or 512
        self.min_prompt_tokens = meta.get("train_config", {}).get("min_prompt_tokens", min_prompt_tokens)
        self.batch_size = batch_size
        self.template = chat_template_layout(tokenizer) or pair_template(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, prompt, response: str) -> tuple[list[int], list[int] | None]:
        texts = pair_texts(self.tokenizer, prompt, response)
        p, r = (self.tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] for t in texts)
        budget = self.max_length - self.template.special_tokens
        kept_p, kept_r = truncate(p, r, budget=budget, min_prompt_tokens=self.min_prompt_tokens)
        return build_sequence(self.template, kept_p, kept_r)

    @torch.inference_mode()
    def score(self, prompts: Sequence, responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses differ in length")
        sequences = [self.encode(p, r) for p, r in zip(prompts, responses)]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]), reverse=True)
        scores = [0.0] * len(sequences)
        self.model.eval()
        with faster_linear():  # fp32 CPU linear layers through oneDNN where it outruns MKL (rewards/ml/gemm.py)
            self._score_batches(sequences, order, scores)
        return scores

    def _score_batches(self, sequences: list, order: list[int], scores: list[float]) -> None:
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(sequences[i][0]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            types = torch.zeros((len(idx), width), dtype=torch.long) if self.template.type_ids else None
            for row, i in enumerate(idx):
                seq, seq_types = sequences[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                if types is not None:
                    types[row, : len(seq)] = torch.tensor(seq_types)
            rewards = (
                sequence_scores(
                    self.model,
                    ids.to(self.device),
                    mask.to(self.device),
                    None if types is None else types.to(self.device),
                )
                .cpu()
                .tolist()
            )
            for i, r in zip(idx, rewards):
                scores[i] = float(r)


__all__ = ["RewardScorer", "last_token_index", "sequence_scores"]
