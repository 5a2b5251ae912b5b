"""The reward-model training loop (accelerate-compatible): pairs in, TrainResult with metrics and curves out.

One process on CPU or one GPU when called directly; several GPUs, unchanged, under
`accelerate launch -m rewards.ml.cli ...` (Accelerator shards the batches and syncs gradients).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rewards.ml.artifact import resolve_base_model, save_artifact
from rewards.ml.config import RewardTrainConfig
from rewards.ml.data import (
    LengthBucketBatchSampler,
    PairCollator,
    PreferencePair,
    TruncationStats,
    chat_template_layout,
    encode_pairs,
    pair_template,
    sorted_batches,
)
from rewards.ml.loss import preference_loss
from rewards.ml.metrics import reward_metrics

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


class TrainingStopped(Exception):
    """should_stop() answered True: the run ends without an artifact."""


@dataclass
class TrainResult:
    metrics: dict  # held-out metrics (see metrics.reward_metrics) plus run figures
    curves: dict  # {"train": [{step, loss, accuracy, lr, pairs}], "eval": [{step, loss, accuracy, ece}]}
    steps: int
    train_pairs: int
    eval_pairs: int
    train_seconds: float
    pairs_per_second: float
    truncation: dict
    device: str
    artifact_path: str | None = None
    model: object = field(default=None, repr=False)
    tokenizer: object = field(default=None, repr=False)


class _Batches(list):
    """A fixed list of index batches usable as a DataLoader batch_sampler (accelerate wants batch_size)."""

    def __init__(self, batches, batch_size):
        super().__init__(batches)
        self.batch_size = batch_size


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


def _forward(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over chosen+rejected rows → (r_chosen (B,), r_rejected (B,)) in float32."""
    from rewards.ml.score import sequence_scores

    rewards = sequence_scores(model, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))  # (2B,)
    half = batch["margin"].shape[0]
    return rewards[:half], rewards[half:]


@torch.inference_mode()
def evaluate(model, loader, accelerator, encoded) -> dict:
    """Held-out metrics over every pair of `encoded` (deduplicated across processes by index)."""
    was_training = model.training
    model.eval()
    scores: dict[int, tuple[float, float]] = {}
    for batch in loader:
        r_chosen, r_rejected = _forward(model, batch)
        index, r_chosen, r_rejected = accelerator.gather_for_metrics((batch["index"], r_chosen, r_rejected))
        for i, c, r in zip(index.tolist(), r_chosen.tolist(), r_rejected.tolist()):
            scores[i] = (c, r)
    if was_training:
        model.train()
    order = sorted(scores)
    return reward_metrics(
        [scores[i][0] for i in order], [scores[i][1] for i in order],
        ties=[encoded[i].tie for i in order], categories=[encoded[i].category for i in order],
    )


def _subset(pairs: Sequence[PreferencePair], limit: int | None, seed: int) -> list[PreferencePair]:
    """At most `limit` pairs, a seeded sample in the original order."""
    pairs = list(pairs)
    if limit is None or len(pairs) <= limit:
        return pairs
    import random

    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def with_lora(model, config: RewardTrainConfig):
    """The classifier with LoRA adapters on config.lora's modules; the score head trains in full."""
    from peft import get_peft_model

    if config.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    assert config.lora is not None  # called only when LoRA is on
    return get_peft_model(model, config.lora.peft_config("SEQ_CLS"))


def _use_bf16(config: RewardTrainConfig) -> bool:
    if config.bf16 is not None:
        return config.bf16 and torch.cuda.is_available()
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def train_reward_model(
    config: RewardTrainConfig,
    train_pairs: Sequence[PreferencePair],
    eval_pairs: Sequence[PreferencePair] = (),
    *,
    output_dir: Path | None = None,
    artifact_meta: dict | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    model=None,
    tokenizer=None,
) -> TrainResult:
    """Train r(x, y) on `train_pairs`, evaluate on `eval_pairs`, save to `output_dir` if given."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    progress = progress or (lambda fraction, message: None)
    log = log or logger.info
    if config.ties == "drop":
        train_pairs = [p for p in train_pairs if not p.tie]
        eval_pairs = [p for p in eval_pairs if not p.tie]
    train_pairs = _subset(train_pairs, config.max_train_pairs, config.seed)
    eval_pairs = _subset(eval_pairs, config.max_eval_pairs, config.seed + 1)
    if not train_pairs:
        raise ValueError("no training pairs")
    bf16 = _use_bf16(config)
    # A worker process trains many versions: accelerate keeps precision and accumulation settings
    # in process-wide singletons, so start each run from a clean state (the process group stays).
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=config.grad_accum, mixed_precision="bf16" if bf16 else "no",
        cpu=not torch.cuda.is_available(),
    )
    if torch.cuda.is_available() and config.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_seed(config.seed)
    if model is None or tokenizer is None:
        model, tokenizer = load_base(config)
    if config.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora is not None:
        model = with_lora(model, config)

    progress(0.0, "tokenising")
    template = chat_template_layout(tokenizer) or pair_template(tokenizer)
    truncation = TruncationStats()
    train_encoded = encode_pairs(
        tokenizer, train_pairs, max_length=config.max_length, min_prompt_tokens=config.min_prompt_tokens,
        template=template, stats=truncation,
    )
    eval_encoded = encode_pairs(
        tokenizer, list(eval_pairs), max_length=config.max_length, min_prompt_tokens=config.min_prompt_tokens,
        template=template, stats=truncation,
    )
    if not config.margin_from_strength:
        for pair in train_encoded:
            pair.margin = 0.0
    else:
        for pair in train_encoded:
            pair.margin *= config.margin_scale

    collate = PairCollator(tokenizer.pad_token_id, pad_to_multiple_of=8 if torch.cuda.is_available() else None)
    sampler = LengthBucketBatchSampler([p.length for p in train_encoded], config.batch_size, seed=config.seed, bucket=config.bucket)
    train_loader = torch.utils.data.DataLoader(train_encoded, batch_sampler=sampler, collate_fn=collate)
    eval_loader = torch.utils.data.DataLoader(
        eval_encoded,
        batch_sampler=_Batches(sorted_batches([p.length for p in eval_encoded], config.eval_batch_size), config.eval_batch_size),
        collate_fn=collate,
    )
    batches_per_epoch = math.ceil(len(sampler) / accelerator.num_processes)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.grad_accum))
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = int(config.warmup_ratio * total_steps)

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=torch.cuda.is_available() or None
    )
    schedule = lambda step: (step + 1) / (warmup + 1) if step < warmup else max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    # The scheduler stays unprepared: it steps once per optimiser step, counted above per process.
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)
    log(
        f"training {len(train_encoded)} pairs, held out {len(eval_encoded)}; {total_steps} steps of "
        f"{config.batch_size}×{config.grad_accum}×{accelerator.num_processes} on {accelerator.device}"
        f"{' bf16' if bf16 else ''}; truncated: {truncation.as_dict()}"
    )

    curves: dict[str, list] = {"train": [], "eval": []}
    step, pairs_seen, loop_seconds, tokens, padded = 0, 0, 0.0, 0, 0
    acc_loss, acc_correct, acc_n = 0.0, 0.0, 0
    model.train()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        for batch in train_loader:
            with accelerator.accumulate(model):
                r_chosen, r_rejected = _forward(model, batch)
                tie = batch["tie"] if bool(batch["tie"].any()) else None
                margin = batch["margin"] if config.margin_from_strength else None
                loss = preference_loss(r_chosen, r_rejected, margin=margin, tie=tie)
                if config.center_rewards:
                    loss = loss + config.center_rewards * torch.mean((r_chosen + r_rejected) ** 2)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()  # a no-op until the last micro-batch of an accumulation
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                not_tie = ~batch["tie"]
                acc_loss += loss.item()
                acc_correct += float(((r_chosen > r_rejected) & not_tie).sum())
                acc_n += int(not_tie.sum())
            pairs_seen += batch["margin"].shape[0] * accelerator.num_processes
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
            if not accelerator.sync_gradients:
                continue
            step += 1
            curves["train"].append({
                "step": step, "loss": acc_loss / config.grad_accum,
                "accuracy": acc_correct / acc_n if acc_n else None,
                "lr": scheduler.get_last_lr()[0], "pairs": pairs_seen,
            })
            acc_loss, acc_correct, acc_n = 0.0, 0.0, 0
            progress(0.95 * step / total_steps, f"step {step}/{total_steps} loss {curves['train'][-1]['loss']:.4f}")
            if config.eval_every and step % config.eval_every == 0 and step < total_steps and eval_encoded:
                loop_seconds += time.perf_counter() - started
                held_out = evaluate(model, eval_loader, accelerator, eval_encoded)
                curves["eval"].append({"step": step, **{k: held_out[k] for k in ("loss", "accuracy", "ece")}})
                log(f"step {step}: held-out accuracy {held_out['accuracy']:.3f} loss {held_out['loss']:.4f}")
                started = time.perf_counter()
            if should_stop and should_stop():
                raise TrainingStopped(f"stopped at step {step}")
            if step >= total_steps:
                break
        loop_seconds += time.perf_counter() - started
        if step >= total_steps:
            break

    progress(0.96, "evaluating")
    metrics = evaluate(model, eval_loader, accelerator, eval_encoded) if eval_encoded else {}
    if metrics:
        curves["eval"].append({"step": step, **{k: metrics[k] for k in ("loss", "accuracy", "ece")}})
    train_figures = curves["train"][-min(10, len(curves["train"])) :]
    metrics.update({
        "train_pairs": len(train_encoded),
        "eval_pairs": len(eval_encoded),
        "steps": step,
        "train_loss_last": sum(c["loss"] for c in train_figures) / len(train_figures) if train_figures else None,
        "train_seconds": loop_seconds,
        "pairs_per_second": pairs_seen / loop_seconds if loop_seconds else None,
        "train_tokens": tokens,  # non-padding tokens of this process
        "padding_share": 1 - tokens / padded if padded else None,
        "truncation": truncation.as_dict(),
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        "bf16": bf16,
    })
    result = TrainResult(
        metrics=metrics, curves=curves, steps=step, train_pairs=len(train_encoded), eval_pairs=len(eval_encoded),
        train_seconds=loop_seconds, pairs_per_second=metrics["pairs_per_second"] or 0.0,
        truncation=truncation.as_dict(), device=str(accelerator.device),
    )
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if config.lora is not None:  # the artifact is a plain classifier folder: adapters merged into the weights
        unwrapped = unwrapped.merge_and_unload()
    if output_dir is not None and accelerator.is_main_process:
        progress(0.98, "saving")
        meta = {"train_config": config.as_dict(), "max_length": config.max_length, "lora_merged": config.lora is not None,
                **(artifact_meta or {})}
        result.artifact_path = str(save_artifact(unwrapped, tokenizer, Path(output_dir), meta=meta))
    result.model, result.tokenizer = unwrapped, tokenizer
    progress(1.0, "done")
    return result
