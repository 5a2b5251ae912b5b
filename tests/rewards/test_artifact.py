"""Artifacts: safetensors + config written atomically, loaded back identically; pickles refused."""

from __future__ import annotations

import pytest


def test_artifact_round_trip_scores_the_same(tiny_model_dir, tmp_path):
    from rewards.ml.artifact import load_artifact, read_meta, save_artifact
    from rewards.ml.backbone import load_base
    from rewards.ml.config import RewardTrainConfig
    from rewards.ml.score import RewardScorer

    model, tokenizer = load_base(RewardTrainConfig(base_model=str(tiny_model_dir)))
    folder = save_artifact(model, tokenizer, tmp_path / "v1", meta={"max_length": 64})
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "reward_model.json", "tokenizer.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary folder left
    assert read_meta(folder)["format"] == "prefloop.reward-model/1"

    prompts, responses = ["hello there", "what is 2+2?"], ["general kenobi", "four"]
    before = RewardScorer(model=model, tokenizer=tokenizer, max_length=64).score(prompts, responses)
    loaded, loaded_tokenizer, meta = load_artifact(folder)
    after = RewardScorer(model=loaded, tokenizer=loaded_tokenizer, max_length=meta["max_length"]).score(
        prompts, responses
    )
    assert after == pytest.approx(before, abs=1e-6)
    assert RewardScorer(folder).score(prompts, responses) == pytest.approx(before, abs=1e-6)


def test_a_folder_with_pickle_weights_is_refused_before_anything_is_unpickled(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    import torch

    from rewards.ml.artifact import UnsafeArtifact, load_artifact

    folder = tmp_path / "evil"
    shutil.copytree(tiny_model_dir, folder)
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must never run"))
    with pytest.raises(UnsafeArtifact, match="pytorch_model.bin"):
        load_artifact(folder)


def test_a_folder_without_safetensors_is_refused(tmp_path):
    from rewards.ml.artifact import UnsafeArtifact, check_safe

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UnsafeArtifact, match="no .safetensors"):
        check_safe(tmp_path)


def test_an_artifact_is_never_overwritten(tiny_model_dir, tmp_path):
    from rewards.ml.artifact import save_artifact
    from rewards.ml.backbone import load_base
    from rewards.ml.config import RewardTrainConfig

    model, tokenizer = load_base(RewardTrainConfig(base_model=str(tiny_model_dir)))
    save_artifact(model, tokenizer, tmp_path / "v1", meta={})
    with pytest.raises(FileExistsError):
        save_artifact(model, tokenizer, tmp_path / "v1", meta={})
