"""What a model folder holds, read from its files alone (no torch, no transformers): for registering a user's model.

`inspect_model_folder(folder, kind=...)` checks a Hugging Face folder before anything loads it:
config.json names an architecture of the expected kind, a tokenizer is there, the weights are
safetensors (their headers give the parameter count), and no file is of a type that unpickles
or may (.bin/.pt/.pkl/.joblib/.npy ...). It answers what it found (architecture, parameters,
vocabulary, positions, chat template) or a ModelFolderError whose message names files inside
the folder only, never the folder's absolute path.

An architecture is of the causal-LM kind when its class name ends in "ForCausalLM" or
"LMHeadModel" (GPT-2's naming), of the reward-model kind when it ends in
"ForSequenceClassification"; transformers' own registry is not imported for this, because it
pulls in torch.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from rewards.ml.artifact import PICKLE_SUFFIXES

KINDS = {"causal-lm": ("ForCausalLM", "LMHeadModel"), "sequence-classification": ("ForSequenceClassification",)}
# Files that run code when loaded (pickle) or may (numpy's allow_pickle, joblib): refused outright.
REFUSED_SUFFIXES = PICKLE_SUFFIXES
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model")
MAX_HEADER_BYTES = 100 * 2**20  # a safetensors header larger than this is not a model we accept
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def path_text_problem(text: str) -> str | None:
    """Why `text` cannot be a file-system path (a NUL, a lone surrogate), or None: checked before Path() sees it."""
    if "\x00" in text:
        return "must not contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


class ModelFolderError(ValueError):
    """The folder is not a model of the expected kind; the message is safe to show (no server paths)."""


@dataclass(frozen=True)
class ModelFolderReport:
    kind: str
    architecture: str
    model_type: str
    parameters: int
    vocab_size: int | None
    max_positions: int | None
    chat_template: bool
    tokenizer_files: tuple[str, ...]
    weight_files: tuple[str, ...]
    num_labels: int | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "tokenizer_files": list(self.tokenizer_files), "weight_files": list(self.weight_files)}

    def summary(self) -> str:
        positions = f"{self.max_positions:,}" if self.max_positions else "unknown"
        vocab = f"{self.vocab_size:,}" if self.vocab_size else "unknown"
        return (
            f"{self.architecture}, {self.parameters / 1e6:,.1f}M parameters, vocabulary {vocab}, "
            f"max positions {positions}, chat template {'yes' if self.chat_template else 'no'}"
        )


def refused_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in REFUSED_SUFFIXES)


def safetensors_parameters(path: Path) -> int:
    """Number of values in a safetensors file, from its JSON header (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ModelFolderError(f"{path.name} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or length > path.stat().st_size - 8:
            raise ModelFolderError(f"{path.name} is not a safetensors file (bad header length)")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFolderError(f"{path.name} is not a safetensors file (unreadable header)") from None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
            raise ModelFolderError(f"{path.name} is not a safetensors file (tensor {name!r} has no shape)")
        count = 1
        for dim in entry["shape"]:
            count *= int(dim)
        total += count
    return total


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelFolderError("no config.json: not a Hugging Face model folder")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"config.json is not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(config, dict):
        raise ModelFolderError("config.json is not a JSON object")
    return config


def architecture_of(config: dict, kind: str) -> str:
    suffixes = KINDS[kind]
    names = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    for name in names:
        if name.endswith(suffixes):
            return name
    wanted = " or ".join(f"*{s}" for s in suffixes)
    found = ", ".join(names) or "none"
    raise ModelFolderError(f"config.json architectures must name a {kind} model ({wanted}); found {found}")


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        return False
    try:
        return bool(json.loads(config_file.read_text()).get("chat_template"))
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def inspect_model_folder(folder: Path | str, *, kind: str = "causal-lm") -> ModelFolderReport:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError("not a folder")
    refused = refused_files(folder)
    if refused:
        raise ModelFolderError(
            f"refusing a folder with pickle-based files {refused}: convert the weights to "
            "safetensors (model.save_pretrained(dir, safe_serialization=True)) and remove them"
        )
    config = read_config(folder)
    architecture = architecture_of(config, kind)
    weights = sorted(p.name for p in folder.glob("*.safetensors"))
    if not weights:
        raise ModelFolderError("no .safetensors weights in the folder")
    tokenizer = tuple(name for name in TOKENIZER_FILES if (folder / name).is_file())
    if not tokenizer:
        raise ModelFolderError(f"no tokenizer in the folder (one of {list(TOKENIZER_FILES)})")
    labels = config.get("id2label")
    num_labels = len(labels) if isinstance(labels, dict) and labels else config.get("num_labels")
    if kind == "sequence-classification" and num_labels not in (None, 1):
        raise ModelFolderError(f"a reward model has one output (num_labels 1); this one has {num_labels}")
    nested = config.get("text_config")
    text_config: dict = nested if isinstance(nested, dict) else {}
    positions = next(
        (config.get(k) or text_config.get(k) for k in POSITION_KEYS if config.get(k) or text_config.get(k)), None
    )
    return ModelFolderReport(
        kind=kind,
        architecture=architecture,
        model_type=str(config.get("model_type") or ""),
        parameters=sum(safetensors_parameters(folder / w) for w in weights),
        vocab_size=config.get("vocab_size") or text_config.get("vocab_size"),
        max_positions=positions,
        chat_template=has_chat_template(folder),
        tokenizer_files=tokenizer,
        weight_files=tuple(weights),
        num_labels=1 if kind == "sequence-classification" else None,
    )


__all__ = [
    "ModelFolderError",
    "ModelFolderReport",
    "REFUSED_SUFFIXES",
    "inspect_model_folder",
    "safetensors_parameters",
]
