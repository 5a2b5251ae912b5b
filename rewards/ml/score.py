"""Batched r(x, y) with a saved reward model, using the training truncation policy."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from rewards.ml.artifact import load_artifact
from rewards.ml.data import build_sequence, pair_template, truncate


class RewardScorer:
    """Loads an artifact once; `score(prompts, responses)` returns one float per (x, y)."""

    def __init__(self, folder: Path | None = None, *, model=None, tokenizer=None, max_length: int | None = None,
                 min_prompt_tokens: int = 64, batch_size: int = 32, device: str | None = None):
        meta = {}
        if folder is not None:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            model, tokenizer, meta = load_artifact(folder, device=device)
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.max_length = max_length or meta.get("max_length") or 512
        self.min_prompt_tokens = meta.get("train_config", {}).get("min_prompt_tokens", min_prompt_tokens)
        self.batch_size = batch_size
        self.template = pair_template(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, prompt: str, response: str) -> tuple[list[int], list[int] | None]:
        p, r = (self.tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] for t in (prompt, response))
        budget = self.max_length - self.template.special_tokens
        kept_p, kept_r = truncate(p, r, budget=budget, min_prompt_tokens=self.min_prompt_tokens)
        return build_sequence(self.template, kept_p, kept_r)

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses differ in length")
        sequences = [self.encode(p, r) for p, r in zip(prompts, responses)]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]), reverse=True)
        scores = [0.0] * len(sequences)
        self.model.eval()
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
            inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
            if types is not None:
                inputs["token_type_ids"] = types.to(self.device)
            rewards = self.model(**inputs).logits.squeeze(-1).float().cpu().tolist()
            for i, r in zip(idx, rewards):
                scores[i] = float(r)
        return scores


__all__ = ["RewardScorer"]
