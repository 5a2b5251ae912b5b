"""Tiny random-weight chat models of real architectures (Llama, Qwen2), built in code on MiniLM's vocabulary.

The tokenizer is the demo policy's trimmed MiniLM WordPiece with ChatML markers added and a
ChatML chat template; <|im_end|> is the eos, [PAD] the pad. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def hh_file() -> Path:
    """The HH-RLHF harmless-base test split under PREFLOOP_DATA_DIR (the shared real data); skip without it."""
    import pytest
    from django.conf import settings

    path = Path(settings.PREFLOOP_DATA_DIR) / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    return path


def chat_tokenizer(texts=(), vocab_size: int = 1024):
    from training.ml.policy import demo_tokenizer

    tokenizer = demo_tokenizer(128, texts=list(texts), vocab_size=vocab_size)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer


def model_config(arch: str, tokenizer, *, positions: int = 512, hidden: int = 32):
    from transformers import LlamaConfig, Qwen2Config

    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    return config_class(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=positions,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_chat_model(arch: str, folder: Path, *, texts=(), seed: int = 0, positions: int = 512) -> Path:
    """A 1-layer, 32-wide causal LM of `arch` with random weights, saved (safetensors + tokenizer) to folder."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    tokenizer = chat_tokenizer(texts)
    model = AutoModelForCausalLM.from_config(model_config(arch, tokenizer, positions=positions))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def hh_dialogue(min_chars: int = 24_000) -> list[dict]:
    """Real HH-RLHF turns (harmless-base test split), joined into one long dialogue ending on a user turn."""
    from annotate.services.importing.adapters import hh_turns, split_hh_pair

    turns: list[dict] = []
    with gzip.open(hh_file(), "rt") as fh:
        for line in fh:
            row = json.loads(line)
            split = split_hh_pair(row["chosen"], row["rejected"])
            if split is None:
                continue
            dialogue = hh_turns(split[0])
            if turns and turns[-1]["role"] == dialogue[0]["role"]:
                turns.append({"role": "assistant", "content": split[1].strip() or "I see."})
            turns += dialogue
            if sum(len(t["content"]) for t in turns) >= min_chars:
                break
    return turns
