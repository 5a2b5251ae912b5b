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
from typing import Any

import torch

from rewards.ml.artifact import save_artifact
from rewards.ml.backbone import prepared_model
from rewards.ml.config import RewardTrainConfig
from rewards.ml.cpu import Backoff, heap_kept, is_idle_priority
from rewards.ml.data import (
    EncodedPair,
    LengthBucketBatchSampler,
    PairCollator,
    PreferencePair,
    TruncationStats,
    chat_template_layout,
    encode_pairs,
    pair_template,
    sorted_batches,
)
from rewards.ml.gemm import DEFAULT, faster_linear
from rewards.ml.loss import preference_loss
from rewards.ml.metrics import reward_metrics
from rewards.ml.packing import PackedPairCollator, packed_sequence_scores, supports_packing

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


def _forward(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over chosen+rejected rows (padded or packed) → (r_chosen (B,), r_rejected (B,)) in float32."""
    from rewards.ml.score import sequence_scores

    if "pack_first" in batch:
        rewards = packed_sequence_scores(model, batch)  # (2B,)
    else:
        rewards = sequence_scores(
            model, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        )  # (2B,)
    half = batch["margin"].shape[0]
    return rewards[:half], rewards[half:]


@torch.inference_mode()
def evaluate(model, loader, accelerator, encoded) -> dict:
    """Held-out metrics over every pair of `encoded` (deduplicated across processes by index)."""
    was_training = model.training
    model.eval()
    scores: dict[int, tuple[float, float]] = {}
    for batch in loader:
        with accelerator.autocast():  # the packed path calls the backbone past accelerate's autocast wrapper
            r_chosen, r_rejected = _forward(model, batch)
        index, r_chosen, r_rejected = accelerator.gather_for_metrics((batch["index"], r_chosen, r_rejected))
        for i, c, r in zip(index.tolist(), r_chosen.tolist(), r_rejected.tolist()):
            scores[i] = (c, r)
    if was_training:
        model.train()
    order = sorted(scores)
    return reward_metrics(
        [scores[i][0] for i in order],
        [scores[i][1] for i in order],
        ties=[encoded[i].tie for i in order],
        categories=[encoded[i].category for i in order],
    )


def _subset(pairs: Sequence[PreferencePair], limit: int | None, seed: int) -> list[PreferencePair]:
    """At most `limit` pairs, a seeded sample in the original order."""
    pairs = list(pairs)
    if limit is None or len(pairs) <= limit:
        return pairs
    import random

    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def _use_bf16(config: RewardTrainConfig) -> bool:
    """bf16 autocast: config.bf16 True asks for it (a CPU with AMX runs it too); None: on a GPU that supports it."""
    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass
class _Run:
    """Everything setup_run prepares for the loop: the nanoGPT 'setup' block as one value."""

    config: RewardTrainConfig
    accelerator: Any
    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: LengthBucketBatchSampler
    train_loader: Any
    eval_loader: Any
    train_encoded: list[EncodedPair]
    eval_encoded: list[EncodedPair]
    truncation: TruncationStats
    total_steps: int
    epochs: int
    bf16: bool
    packed: bool
    gemm: str = DEFAULT  # which library multiplies the fp32 CPU linear layers (rewards/ml/gemm.py)


@dataclass
class _LoopStats:
    curves: dict[str, list] = field(default_factory=lambda: {"train": [], "eval": []})
    step: int = 0
    pairs_seen: int = 0
    seconds: float = 0.0
    tokens: int = 0  # real (non-padding) tokens of this process
    slots: int = 0  # token slots computed (real + padding)
    yielded: float = 0.0  # seconds slept between steps to let higher-priority work run (cpu.Backoff)


def _selected_pairs(
    config: RewardTrainConfig, train_pairs: Sequence[PreferencePair], eval_pairs: Sequence[PreferencePair]
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    if config.ties == "drop":
        train_pairs = [p for p in train_pairs if not p.tie]
        eval_pairs = [p for p in eval_pairs if not p.tie]
    train = _subset(train_pairs, config.max_train_pairs, config.seed)
    held_out = _subset(eval_pairs, config.max_eval_pairs, config.seed + 1)
    if not train:
        raise ValueError("no training pairs")
    return train, held_out


def _new_accelerator(config: RewardTrainConfig, bf16: bool):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    # A worker process trains many versions: accelerate keeps precision and accumulation settings
    # in process-wide singletons, so start each run from a clean state (the process group stays).
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision="bf16" if bf16 else "no",
        cpu=not torch.cuda.is_available(),
    )
    if torch.cuda.is_available() and config.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return accelerator


def _encoded(config: RewardTrainConfig, tokenizer, train: list[PreferencePair], held_out: list[PreferencePair]):
    """Tokenise each split once (every distinct text once): (train, held-out, truncation stats)."""
    template = chat_template_layout(tokenizer) or pair_template(tokenizer)
    truncation = TruncationStats()
    options: dict[str, Any] = dict(
        max_length=config.max_length, min_prompt_tokens=config.min_prompt_tokens, template=template, stats=truncation
    )
    train_encoded = encode_pairs(tokenizer, train, **options)
    eval_encoded = encode_pairs(tokenizer, held_out, **options)
    for pair in train_encoded:
        pair.margin = pair.margin * config.margin_scale if config.margin_from_strength else 0.0
    return train_encoded, eval_encoded, truncation


def _schedule(config: RewardTrainConfig, batches_per_epoch: int) -> tuple[int, int, Callable[[int], float]]:
    """(total optimiser steps, epochs, lr multiplier per step): linear warm-up then linear decay to 0."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.grad_accum))
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    warmup = int(config.warmup_ratio * total_steps)

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return total_steps, math.ceil(total_steps / steps_per_epoch), multiplier


def setup_run(
    config: RewardTrainConfig,
    train_pairs: Sequence[PreferencePair],
    eval_pairs: Sequence[PreferencePair],
    *,
    model=None,
    tokenizer=None,
    progress: Progress,
    log: Callable[[str], None],
) -> _Run:
    """Seed, accelerator, model, tokenised splits, loaders, optimiser and schedule."""
    from accelerate.utils import set_seed

    train, held_out = _selected_pairs(config, train_pairs, eval_pairs)
    bf16 = _use_bf16(config)
    accelerator = _new_accelerator(config, bf16)
    set_seed(config.seed)
    model, tokenizer = prepared_model(config, model, tokenizer)
    progress(0.0, "tokenising")
    train_encoded, eval_encoded, truncation = _encoded(config, tokenizer, train, held_out)
    packed = config.packing is not False and accelerator.num_processes == 1 and supports_packing(model)
    if config.packing and not packed:  # asked for by name: say why not
        log("packing: not for this model, process count or gradient checkpointing; batches are padded")
    collate = (
        PackedPairCollator()
        if packed
        else PairCollator(tokenizer.pad_token_id, pad_to_multiple_of=8 if torch.cuda.is_available() else None)
    )
    sampler = LengthBucketBatchSampler(
        [p.length for p in train_encoded],
        config.batch_size,
        seed=config.seed,
        bucket=(not packed) if config.bucket is None else config.bucket,
    )
    train_loader = torch.utils.data.DataLoader(train_encoded, batch_sampler=sampler, collate_fn=collate)
    eval_batches = sorted_batches([p.length for p in eval_encoded], config.eval_batch_size)
    eval_loader = torch.utils.data.DataLoader(
        eval_encoded, batch_sampler=_Batches(eval_batches, config.eval_batch_size), collate_fn=collate
    )
    total_steps, epochs, multiplier = _schedule(config, math.ceil(len(sampler) / accelerator.num_processes))
    # fused: one vectorised, multi-threaded kernel per step on CPU as on a GPU (the default on CPU is a
    # Python loop of single-threaded ops per tensor: ~10 % of a MiniLM step, most of it the embedding's sqrt).
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    # The scheduler stays unprepared: it steps once per optimiser step, counted above per process.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)
    log(
        f"training {len(train_encoded)} pairs, held out {len(eval_encoded)}; {total_steps} steps of "
        f"{config.batch_size}×{config.grad_accum}×{accelerator.num_processes} on {accelerator.device}"
        f"{' bf16' if bf16 else ''}{' packed' if packed else ''}; truncated: {truncation.as_dict()}"
    )
    return _Run(
        config,
        accelerator,
        model,
        tokenizer,
        optimizer,
        scheduler,
        sampler,
        train_loader,
        eval_loader,
        train_encoded,
        eval_encoded,
        truncation,
        total_steps,
        epochs,
        bf16,
        packed,
    )


def _train_step(run: _Run, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward, loss, backward and (on the last micro-batch of an accumulation) the optimiser step."""
    config, accelerator = run.config, run.accelerator
    with accelerator.accumulate(run.model):
        with accelerator.autocast():  # bf16 runs: the packed path calls the backbone past the wrapped forward
            r_chosen, r_rejected = _forward(run.model, batch)
        tie = batch["tie"] if bool(batch["tie"].any()) else None
        margin = batch["margin"] if config.margin_from_strength else None
        loss = preference_loss(r_chosen, r_rejected, margin=margin, tie=tie)
        if config.center_rewards:
            loss = loss + config.center_rewards * torch.mean((r_chosen + r_rejected) ** 2)
        accelerator.backward(loss)
        if accelerator.sync_gradients and config.max_grad_norm:
            accelerator.clip_grad_norm_(run.model.parameters(), config.max_grad_norm)
        run.optimizer.step()  # a no-op until the last micro-batch of an accumulation
        if accelerator.sync_gradients:
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    return loss.detach(), r_chosen.detach(), r_rejected.detach()


def _token_counts(batch: dict) -> tuple[int, int]:
    """(real tokens, token slots computed) of one batch, padded or packed."""
    if "real_tokens" in batch:
        return int(batch["real_tokens"]), int(batch["slot_tokens"])
    return int(batch["attention_mask"].sum()), batch["attention_mask"].numel()


def run_loop(
    run: _Run, *, progress: Progress, log: Callable[[str], None], should_stop: Callable[[], bool] | None = None
) -> _LoopStats:
    """The optimisation loop: curves per optimiser step, held-out points every eval_every steps."""
    config, accelerator, stats = run.config, run.accelerator, _LoopStats()
    acc_loss, acc_correct, acc_n = 0.0, 0.0, 0
    backoff = Backoff() if is_idle_priority() else None  # a worker at idle priority yields to the web server
    run.model.train()
    for epoch in range(run.epochs):
        run.sampler.set_epoch(epoch)
        started = time.perf_counter()
        for batch in run.train_loader:
            loss, r_chosen, r_rejected = _train_step(run, batch)
            not_tie = ~batch["tie"]
            acc_loss += loss.item()
            acc_correct += float(((r_chosen > r_rejected) & not_tie).sum())
            acc_n += int(not_tie.sum())
            stats.pairs_seen += batch["margin"].shape[0] * accelerator.num_processes
            real, slots = _token_counts(batch)
            stats.tokens, stats.slots = stats.tokens + real, stats.slots + slots
            if not accelerator.sync_gradients:
                continue
            stats.step += 1
            point = {
                "step": stats.step,
                "loss": acc_loss / config.grad_accum,
                "accuracy": acc_correct / acc_n if acc_n else None,
                "lr": run.scheduler.get_last_lr()[0],
                "pairs": stats.pairs_seen,
            }
            stats.curves["train"].append(point)
            acc_loss, acc_correct, acc_n = 0.0, 0.0, 0
            progress(
                0.95 * stats.step / run.total_steps, f"step {stats.step}/{run.total_steps} loss {point['loss']:.4f}"
            )
            if (
                config.eval_every
                and stats.step % config.eval_every == 0
                and stats.step < run.total_steps
                and run.eval_encoded
            ):
                stats.seconds += time.perf_counter() - started
                held_out = evaluate(run.model, run.eval_loader, accelerator, run.eval_encoded)
                stats.curves["eval"].append(
                    {"step": stats.step, **{k: held_out[k] for k in ("loss", "accuracy", "ece")}}
                )
                log(f"step {stats.step}: held-out accuracy {held_out['accuracy']:.3f} loss {held_out['loss']:.4f}")
                started = time.perf_counter()
                if backoff:
                    backoff.reset()
            if should_stop and should_stop():
                raise TrainingStopped(f"stopped at step {stats.step}")
            if backoff:
                stats.yielded += backoff()
            if stats.step >= run.total_steps:
                break
        stats.seconds += time.perf_counter() - started
        if stats.step >= run.total_steps:
            break
    return stats


def summarise(
    run: _Run, stats: _LoopStats, *, output_dir: Path | None, artifact_meta: dict | None, progress: Progress
) -> TrainResult:
    """Final held-out metrics, run figures, and the artifact (adapters merged) when output_dir is given."""
    config, accelerator = run.config, run.accelerator
    progress(0.96, "evaluating")
    metrics = evaluate(run.model, run.eval_loader, accelerator, run.eval_encoded) if run.eval_encoded else {}
    if metrics:
        stats.curves["eval"].append({"step": stats.step, **{k: metrics[k] for k in ("loss", "accuracy", "ece")}})
    last = stats.curves["train"][-min(10, len(stats.curves["train"])) :]
    metrics.update(
        {
            "train_pairs": len(run.train_encoded),
            "eval_pairs": len(run.eval_encoded),
            "steps": stats.step,
            "train_loss_last": sum(c["loss"] for c in last) / len(last) if last else None,
            "train_seconds": stats.seconds,
            "pairs_per_second": stats.pairs_seen / stats.seconds if stats.seconds else None,
            "pairs_trained": stats.pairs_seen,  # pair visits, all processes: epochs × train_pairs when no max_steps
            "train_tokens": stats.tokens,  # non-padding tokens of this process
            "tokens_per_second": stats.tokens / stats.seconds if stats.seconds else None,
            "padding_share": 1 - stats.tokens / stats.slots if stats.slots else None,
            "yielded_seconds": stats.yielded,  # part of train_seconds slept while the machine was busy
            "truncation": run.truncation.as_dict(),
            "device": str(accelerator.device),
            "processes": accelerator.num_processes,
            "bf16": run.bf16,
            "packed": run.packed,
            "linear_backend": run.gemm,  # "onednn" where it outran MKL on this CPU, else "default"
            "bucketed": run.sampler.bucket,  # length-bucketed batches (default: padded runs only)
        }
    )
    result = TrainResult(
        metrics=metrics,
        curves=stats.curves,
        steps=stats.step,
        train_pairs=len(run.train_encoded),
        eval_pairs=len(run.eval_encoded),
        train_seconds=stats.seconds,
        pairs_per_second=metrics["pairs_per_second"] or 0.0,
        truncation=run.truncation.as_dict(),
        device=str(accelerator.device),
    )
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(run.model)
    if config.lora is not None:  # the artifact is a plain classifier folder: adapters merged into the weights
        unwrapped = unwrapped.merge_and_unload()
    if output_dir is not None and accelerator.is_main_process:
        progress(0.98, "saving")
        meta = {
            "train_config": config.as_dict(),
            "max_length": config.max_length,
            "lora_merged": config.lora is not None,
            **(artifact_meta or {}),
        }
        result.artifact_path = str(save_artifact(unwrapped, run.tokenizer, Path(output_dir), meta=meta))
    result.model, result.tokenizer = unwrapped, run.tokenizer
    progress(1.0, "done")
    return result


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
    """Train r(x, y) on `train_pairs`, evaluate on `eval_pairs`, save to `output_dir` if given: setup → loop → summary."""
    progress = progress or (lambda fraction, message: None)
    log = log or logger.info
    # heap_kept: activation blocks reused between steps, not mmap'd afresh (rewards/ml/cpu.py); faster_linear: fp32
    # CPU linear layers through oneDNN where it beats MKL here (gemm.py; not for checkpointing's recomputation)
    with heap_kept(), faster_linear(DEFAULT if config.gradient_checkpointing else None) as gemm:
        run = setup_run(config, train_pairs, eval_pairs, model=model, tokenizer=tokenizer, progress=progress, log=log)
        run.gemm = gemm
        stats = run_loop(run, progress=progress, log=log, should_stop=should_stop)
        return summarise(run, stats, output_dir=output_dir, artifact_meta=artifact_meta, progress=progress)
