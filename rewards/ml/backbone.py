"""The backbone a reward-model run trains: loaded from local files only, then prepared (dropout, checkpointing, LoRA)."""

from __future__ import annotations

import torch

from rewards.ml.artifact import resolve_base_model
from rewards.ml.config import RewardTrainConfig


def load_base(config: RewardTrainConfig):
    """(model with a 1-output head, tokenizer) from local files only: nothing is ever downloaded."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_base_model(config.base_model)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is expected here
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, local_files_only=True, use_safetensors=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def with_lora(model, config: RewardTrainConfig):
    """The classifier with LoRA adapters on config.lora's modules; the score head trains in full."""
    from peft import get_peft_model

    if config.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    assert config.lora is not None  # called only when LoRA is on
    return get_peft_model(model, config.lora.peft_config("SEQ_CLS"))


def prepared_model(config: RewardTrainConfig, model=None, tokenizer=None):
    """(model, tokenizer) a run trains: `model`/`tokenizer` or load_base's, dropout off if asked, checkpointing, LoRA."""
    if model is None or tokenizer is None:
        model, tokenizer = load_base(config)
    if config.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora is not None:
        model = with_lora(model, config)
    return model, tokenizer


__all__ = ["load_base", "prepared_model", "with_lora"]
