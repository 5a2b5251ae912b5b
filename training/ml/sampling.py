"""Samplers: K completions per prompt from a policy, with the transformers backend or vLLM on a GPU.

Both backends answer `generate(prompts, n=, params=)` with one list of n Samples per prompt, in
prompt order. A prompt is a plain string (one user turn) or a conversation ({role, content}
turns); the transformers backend renders it with `rewards.ml.chat.encode_prompt` (the policy
tokenizer's chat template, plain text without one), left-truncated to the model's positions −
max_new_tokens, so sampling and every update see the same text. finish_reason is "stop" (the
model emitted eos) or "length" (max_new_tokens reached), vLLM's terms. num_tokens counts
generated tokens without the eos.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Protocol

from rewards.ml.chat import PromptLike, RenderedPrompt, encode_prompt, prompt_budget
from training.ml.config import SamplerParams
from training.ml.data import format_prompt

__all__ = [
    "Sample",
    "Sampler",
    "TransformersSampler",
    "VLLMSampler",
    "format_prompt",
    "generate_ids",
    "make_sampler",
    "render_prompts",
    "vllm_available",
]


@dataclass(frozen=True)
class Sample:
    text: str
    num_tokens: int  # generated tokens, eos excluded
    finish_reason: str  # "stop" | "length"
    seed: int  # the sampler seed of the call that drew it (SamplerParams.seed)
    token_ids: tuple[int, ...] = ()  # generated ids, eos included when finish_reason == "stop"
    prompt_truncated_tokens: int = 0  # prompt tokens cut from the left to fit the model (0: whole prompt)
    prompt_text: str = ""  # the rendered prompt the model was conditioned on


class Sampler(Protocol):
    def generate(self, prompts: Sequence[PromptLike], *, n: int, params: SamplerParams) -> list[list[Sample]]: ...


@dataclass
class Rollout:
    """Token-level view of one sample (what PPO and the metrics need)."""

    prompt_index: int
    prompt_ids: list[int]
    response_ids: list[int]  # eos included when finished
    finished: bool
    prompt: RenderedPrompt | None = None  # how the prompt was rendered and truncated


def render_prompts(model, tokenizer, prompts: Sequence[PromptLike], *, max_new_tokens: int) -> list[RenderedPrompt]:
    """Each prompt rendered for this policy and left-truncated to its positions − max_new_tokens."""
    budget = prompt_budget(getattr(model, "config", None), max_new_tokens)
    return [encode_prompt(tokenizer, p, max_tokens=budget) for p in prompts]


def truncation_report(rendered: Sequence[RenderedPrompt]) -> dict:
    """How many prompts lost their beginning, and how many tokens and turns they lost in all."""
    cut = [r for r in rendered if r.truncated]
    return {
        "prompts": len(rendered),
        "truncated_prompts": len(cut),
        "truncated_tokens": sum(r.truncated_tokens for r in cut),
        "dropped_turns": sum(r.dropped_turns for r in cut),
    }


def _left_padded(rows: Sequence[Sequence[int]], pad_token_id: int, device):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def generate_ids(
    model, tokenizer, prompts: Sequence[PromptLike], *, n: int, params: SamplerParams, batch_size: int = 32
) -> list[Rollout]:
    """n rollouts per prompt (prompt-major order), seeded by params.seed for the whole call.

    Prompts are rendered and left-truncated by render_prompts. Batched with left padding;
    generation stops at the tokenizer's eos. top_k=0 switches top-k off
    so the distribution is the one temperature and top_p describe (vLLM's default too); left unset
    (None), transformers 5 fills in its global default top_k=50.
    The global RNG is restored afterwards, so sampling does not shift a training run's randomness.
    """
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    greedy = params.temperature == 0
    gen_config = GenerationConfig(
        do_sample=not greedy,
        temperature=None if greedy else params.temperature,
        top_p=None if greedy else params.top_p,
        top_k=params.top_k,
        max_new_tokens=params.max_new_tokens,
        num_return_sequences=n,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    rendered = render_prompts(model, tokenizer, prompts, max_new_tokens=params.max_new_tokens)
    was_training = model.training
    model.eval()
    rollouts: list[Rollout] = []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(params.seed)
        for start in range(0, len(rendered), batch_size):
            chunk = rendered[start : start + batch_size]
            input_ids, attention = _left_padded([r.ids for r in chunk], tokenizer.pad_token_id, device)
            out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=gen_config)
            generated = out[:, input_ids.shape[1] :].tolist()
            for row, ids in enumerate(generated):
                i = row // n
                finished = eos in ids
                response = ids[: ids.index(eos) + 1] if finished else ids
                rollouts.append(Rollout(start + i, list(chunk[i].ids), response, finished, chunk[i]))
    if was_training:
        model.train()
    return rollouts


def to_sample(tokenizer, rollout: Rollout, seed: int) -> Sample:
    ids = rollout.response_ids
    body = ids[:-1] if rollout.finished else ids
    text = tokenizer.decode(body, skip_special_tokens=True).strip()
    rendered = rollout.prompt
    return Sample(
        text=text,
        num_tokens=len(body),
        finish_reason="stop" if rollout.finished else "length",
        seed=seed,
        token_ids=tuple(ids),
        prompt_truncated_tokens=rendered.truncated_tokens if rendered else 0,
        prompt_text=rendered.text if rendered else "",
    )


class TransformersSampler:
    """`model.generate()` on CPU or one GPU; from a policy folder or an already loaded (model, tokenizer)."""

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        model=None,
        tokenizer=None,
        device: str | None = None,
        batch_size: int = 32,
    ):
        if model_path is not None and isinstance(model_path, tuple):
            model, tokenizer = model_path
            model_path = None
        if model_path is not None:
            from training.ml.policy import load_policy

            model, tokenizer = load_policy(model_path, device=device)
        if model is None or tokenizer is None:
            raise ValueError("TransformersSampler needs model_path or both model and tokenizer")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def generate(self, prompts: Sequence[PromptLike], *, n: int, params: SamplerParams) -> list[list[Sample]]:
        if n < 1:
            raise ValueError("n must be positive")
        rollouts = generate_ids(self.model, self.tokenizer, prompts, n=n, params=params, batch_size=self.batch_size)
        out: list[list[Sample]] = [[] for _ in prompts]
        for rollout in rollouts:
            out[rollout.prompt_index].append(to_sample(self.tokenizer, rollout, params.seed))
        return out


class VLLMSampler:
    """vLLM's offline engine on a GPU (same interface; needs `pip install vllm` and CUDA).

    Prompts are plain strings or conversations (lists of {role, content}). Each is rendered by
    `rewards.ml.chat.encode_prompt` with the engine's tokenizer (its chat template with the
    generation prompt when it has one, the Question/Answer text otherwise), left-truncated to
    max_model_len − max_new_tokens, and sent to `LLM.generate` as `{"prompt_token_ids": ids}`: the
    model sees exactly the ids the transformers backend would give it, and the truncation is
    reported on every Sample as with that backend. A peft LoRA folder is
    served as its base model plus the adapter through vLLM's `LoRARequest`. RequestOutputs come
    back in prompt order, each with n CompletionOutputs (text, token_ids, finish_reason). A
    per-request seed makes a call reproducible on one GPU and vLLM version; it does not reproduce
    the transformers backend's draws. See training/ml/vllm_backend.py for the exact translation.
    """

    def __init__(
        self,
        model_path: Path | str,
        *,
        base_path: Path | str | None = None,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        seed: int = 0,
    ):
        from vllm import LLM, SamplingParams

        from training.ml import vllm_backend
        from training.ml.policy import check_policy_folder

        self.adapter = vllm_backend.adapter_folder(check_policy_folder(Path(model_path)), base_path=base_path)
        self.llm = LLM(
            **vllm_backend.engine_kwargs(
                self.adapter,
                dtype=dtype,
                seed=seed,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                enforce_eager=enforce_eager,
            )
        )
        self.lora_request = None
        if self.adapter.adapter_path is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = vllm_backend.lora_request(LoRARequest, self.adapter)
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_token_id = self.tokenizer.eos_token_id
        self.positions = max_model_len or vllm_backend.folder_positions(self.adapter.base_path)
        self.top_k_off = vllm_backend.top_k_off(SamplingParams)

    def generate(self, prompts: Sequence, *, n: int, params: SamplerParams) -> list[list[Sample]]:
        from vllm import SamplingParams

        from training.ml import vllm_backend

        sampling = SamplingParams(**vllm_backend.sampling_kwargs(params, n=n, top_k_off_value=self.top_k_off))
        budget = None
        if self.positions:
            budget = prompt_budget(SimpleNamespace(max_position_embeddings=self.positions), params.max_new_tokens)
        # Rendered and left-truncated here by the same function as the transformers path, then sent
        # as token ids: vLLM conditions on exactly the ids generate() would (no second template pass).
        rendered = [encode_prompt(self.tokenizer, p, max_tokens=budget) for p in prompts]
        inputs = [{"prompt_token_ids": list(r.ids)} for r in rendered]
        outputs = self.llm.generate(inputs, sampling, use_tqdm=False, lora_request=self.lora_request)
        return [self._samples(request, n=n, seed=params.seed, rendered=r) for request, r in zip(outputs, rendered)]

    def _samples(self, request, *, n: int, seed: int, rendered=None) -> list[Sample]:
        samples = []
        for completion in request.outputs:
            ids = tuple(completion.token_ids)
            body = ids[:-1] if ids and ids[-1] == self.eos_token_id else ids
            finish = "stop" if completion.finish_reason == "stop" else "length"
            samples.append(
                Sample(
                    text=completion.text.strip(),
                    num_tokens=len(body),
                    finish_reason=finish,
                    seed=seed,
                    token_ids=ids,
                    prompt_truncated_tokens=rendered.truncated_tokens if rendered else 0,
                    prompt_text=rendered.text if rendered else "",
                )
            )
        if len(samples) == 1 and n > 1:  # greedy: vLLM draws once (n > 1 is refused), every draw is the same
            samples = samples * n
        return samples


def vllm_available() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_sampler(model_path: Path | str, backend: str = "auto", **kwargs) -> Sampler:
    """A sampler for a policy folder. backend "auto": vLLM when importable and a GPU is present, else transformers."""
    if backend not in ("auto", "transformers", "vllm"):
        raise ValueError(f"backend must be 'auto', 'transformers' or 'vllm' (got {backend!r})")
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        if backend == "vllm" and not vllm_available():
            raise RuntimeError("backend='vllm' needs the vllm package and a CUDA GPU")
        return VLLMSampler(model_path, **kwargs)
    return TransformersSampler(model_path, **kwargs)
