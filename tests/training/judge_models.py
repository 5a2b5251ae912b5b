"""Tiny real-architecture judges whose verdict is known from their weights (built in code, nothing downloaded).

`letter_judge(letter)` is a 1-layer Llama on the ChatML MiniLM tokenizer whose every next-token
distribution puts almost all mass on one letter whatever the input: every embedding is the same
vector, the attention and MLP write nothing back (o_proj, down_proj zero), so the final hidden
state is that vector at every position, and the output layer maps it to the letter's logit only.
"""

from __future__ import annotations

from pathlib import Path

from tests.training.chat_models import chat_tokenizer, model_config


def letter_judge(letter: str, *, logit: float = 8.0):
    """(model, tokenizer): a causal LM that always answers `letter` (P ≈ 1 among A/B/C)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer = chat_tokenizer()
    model = AutoModelForCausalLM.from_config(model_config("llama", tokenizer))
    letter_id = tokenizer(letter, add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        hidden = model.config.hidden_size
        model.model.embed_tokens.weight[:] = 1.0  # every token, every position: the same residual stream
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[letter_id] = logit / hidden  # RMSNorm(ones) = ones, so the logit is `logit`
    model.eval()
    return model, tokenizer


def save_judge(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)
