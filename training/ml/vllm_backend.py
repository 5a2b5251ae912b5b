"""Translation from prefloop's sampling inputs to vLLM's offline API (vllm.LLM), kept apart so it is testable without vLLM.

Written against vLLM's own code (vllm/sampling_params.py, vllm/entrypoints/llm.py,
vllm/lora/request.py of vllm-project/vllm; read, never run here: vLLM needs CUDA):
- `SamplingParams(n, temperature, top_p, top_k, max_tokens, seed, skip_special_tokens)`.
  top_k "0 (or -1)" means off in current vLLM, only -1 in older releases: `top_k_off` reads the
  installed default. temperature 0 is greedy and vLLM then refuses n > 1, so a greedy call asks
  for one draw and the caller repeats it n times (what transformers' generate() returns too).
  vLLM refuses temperature > 2.
- `LLM.generate(list of {"prompt_token_ids": [...]}, sampling_params, use_tqdm=, lora_request=)`
  takes prompts already rendered and truncated by rewards.ml.chat.encode_prompt (TokensPrompt),
  so vLLM and transformers condition on the same ids.
- `LoRARequest(lora_name=, lora_int_id=, lora_path=)`, always by keyword: the positional order
  changed between releases (lora_path moved before lora_int_id). lora_int_id must be >= 1, and
  the engine must be built with `enable_lora=True, max_lora_rank >= the adapter's r`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from training.ml.config import SamplerParams

VLLM_MAX_TEMPERATURE = 2.0
# max_lora_rank values vLLM's LoRAConfig accepts; an adapter's r is rounded up to the next one.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class AdapterFolder:
    base_path: str  # the base model vLLM loads
    adapter_path: str | None  # a peft LoRA folder, served through a LoRARequest
    rank: int | None  # the adapter's r


def top_k_off(sampling_params_cls) -> int:
    """The installed vLLM's value for "top-k off": its SamplingParams default (0 now, -1 before)."""
    try:
        return int(sampling_params_cls().top_k)
    except Exception:  # noqa: BLE001 — an unexpected build: -1 is accepted as off by every release
        return -1


def sampling_kwargs(params: SamplerParams, *, n: int, top_k_off_value: int = 0) -> dict:
    """SamplingParams(**this) for n draws per prompt (n = 1 when greedy: see the module note)."""
    if n < 1:
        raise ValueError("n must be positive")
    if params.temperature > VLLM_MAX_TEMPERATURE:
        raise ValueError(f"temperature must be at most {VLLM_MAX_TEMPERATURE} with vLLM (got {params.temperature})")
    greedy = params.temperature == 0
    return {
        "n": 1 if greedy else n,
        "temperature": params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": params.top_k if params.top_k > 0 and not greedy else top_k_off_value,
        "max_tokens": params.max_new_tokens,
        "seed": params.seed,
        "skip_special_tokens": True,
    }


def folder_positions(folder: Path | str) -> int | None:
    """The model's positions from its config.json (max_position_embeddings / n_positions), None if unknown."""
    from types import SimpleNamespace

    from rewards.ml.chat import model_positions

    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        return None
    return model_positions(SimpleNamespace(**json.loads(config_file.read_text())))


def adapter_folder(folder: Path | str, *, base_path: Path | str | None = None) -> AdapterFolder:
    """A policy folder → what vLLM loads: itself, or (its base, itself as a LoRA adapter) for a peft folder."""
    folder = Path(folder)
    config_file = folder / ADAPTER_CONFIG
    if not config_file.is_file():
        return AdapterFolder(base_path=str(folder), adapter_path=None, rank=None)
    config = json.loads(config_file.read_text())
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise ValueError(f"vLLM serves LoRA adapters only; {folder.name} is a {config.get('peft_type')} adapter")
    base = base_path or config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{folder.name}/{ADAPTER_CONFIG} names no base model; pass base_path")
    return AdapterFolder(base_path=str(base), adapter_path=str(folder), rank=int(config.get("r") or 8))


def max_lora_rank(rank: int) -> int:
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")


def engine_kwargs(
    adapter: AdapterFolder,
    *,
    dtype: str,
    seed: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    enforce_eager: bool,
) -> dict:
    """LLM(**this): the base model, and LoRA switched on (rank bound) when an adapter will be served."""
    own_tokenizer = adapter.adapter_path and (Path(adapter.adapter_path) / "tokenizer_config.json").is_file()
    kwargs = {
        "model": adapter.base_path,
        "tokenizer": adapter.adapter_path if own_tokenizer else adapter.base_path,
        "dtype": dtype,
        "seed": seed,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": max_model_len,
        "enforce_eager": enforce_eager,
    }
    if adapter.adapter_path is not None:
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=max_lora_rank(adapter.rank or 8))
    return kwargs


def lora_request(lora_request_cls, adapter: AdapterFolder):
    """LoRARequest for the adapter (None without one); the name is stable per folder, the id is 1."""
    if adapter.adapter_path is None:
        return None
    name = "prefloop-" + hashlib.sha256(adapter.adapter_path.encode()).hexdigest()[:12]
    return lora_request_cls(lora_name=name, lora_int_id=1, lora_path=adapter.adapter_path)


__all__ = [
    "AdapterFolder",
    "adapter_folder",
    "engine_kwargs",
    "lora_request",
    "max_lora_rank",
    "sampling_kwargs",
    "top_k_off",
]
