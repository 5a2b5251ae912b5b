"""Model folders written from plain files (no torch): what registration inspects, without real weights."""

from __future__ import annotations

import json
import struct
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> int:
    """A valid safetensors file of zero-filled float32 tensors; returns its number of values."""
    header, offset, total = {}, 0, 0
    for name, shape in shapes.items():
        count = 1
        for dim in shape:
            count *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * count]}
        offset += 4 * count
        total += count
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return total


def write_model_folder(
    root: Path,
    name: str = "sft",
    *,
    architecture: str = "LlamaForCausalLM",
    model_type: str = "llama",
    chat_template: bool = False,
    tokenizer: bool = True,
    weights: bool = True,
    extra_files: tuple[str, ...] = (),
    config: dict | None = None,
) -> Path:
    folder = Path(root) / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": [architecture],
                "model_type": model_type,
                "vocab_size": 1000,
                "max_position_embeddings": 2048,
                **(config or {}),
            }
        )
    )
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML} if chat_template else {}))
    if weights:
        write_safetensors(folder / "model.safetensors", {"embed.weight": [1000, 64], "head.weight": [64]})
    for extra in extra_files:
        (folder / extra).write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1
    return folder
