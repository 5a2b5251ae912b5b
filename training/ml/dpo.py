"""DPO update: the round's labelled pairs → a new policy, with trl's DPOTrainer against the frozen reference.

L_DPO = −E log σ(β [(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])
(Rafailov et al. 2023; loss_type picks trl's variant). Prompts are formatted with
`format_prompt` and responses joined with `join_response`, exactly as sampling produced them;
trl appends the eos, so "stop here" is part of what a preference teaches.
"""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from training.ml.config import DPOConfig
from training.ml.data import PreferenceExample, format_prompt, join_response
from training.ml.results import TrainingStopped, UpdateResult

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, dict], None]
_CURVE_KEYS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected",
               "logps/chosen", "logps/rejected", "learning_rate", "grad_norm")


def _use_bf16(config: DPOConfig) -> bool:
    import torch

    if config.bf16 is not None:
        return config.bf16 and torch.cuda.is_available()
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def preference_dataset(examples: Sequence[PreferenceExample]):
    """trl's standard explicit-prompt preference format: {prompt, chosen, rejected} strings."""
    from datasets import Dataset

    rows = {"prompt": [], "chosen": [], "rejected": []}
    for example in examples:
        rows["prompt"].append(format_prompt(example.prompt))
        rows["chosen"].append(join_response(example.chosen))
        rows["rejected"].append(join_response(example.rejected))
    return Dataset.from_dict(rows)


def train_dpo(
    *,
    policy_path: Path | str,
    reference_path: Path | str,
    examples: Sequence[PreferenceExample],
    out_dir: Path | str,
    config: DPOConfig = DPOConfig(),
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> UpdateResult:
    """One DPO update of `policy_path` on `examples` against `reference_path` (frozen); saves to out_dir.

    progress(step, total, metrics) is called after every optimiser step; should_stop() returning True
    stops after the current step and raises TrainingStopped (nothing is saved).
    """
    import torch
    import datasets
    from transformers import PrinterCallback, TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import DPOConfig as TrlDPOConfig, DPOTrainer

    from training.ml.policy import load_policy, save_policy

    examples = [e for e in examples if e.chosen.strip() != e.rejected.strip()]
    if not examples:
        raise ValueError("no preference examples (pairs with identical sides are left out)")
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_policy(policy_path, device=device, dtype=torch.float32)
    reference, _ = load_policy(reference_path, device=device, dtype=torch.bfloat16 if _use_bf16(config) else torch.float32)
    reference.requires_grad_(False)
    model.train()
    curve: list[dict] = []
    stopped = {"at": None}

    class _Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            point = {"step": state.global_step, **{k: float(logs[k]) for k in _CURVE_KEYS if k in logs}}
            curve.append(point)
            if progress:
                progress(state.global_step, state.max_steps, point)

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop and should_stop():
                stopped["at"] = state.global_step
                control.should_training_stop = True

    with tempfile.TemporaryDirectory(prefix="prefloop-dpo-") as scratch:
        args = TrlDPOConfig(
            output_dir=scratch, beta=config.beta, loss_type=[config.loss_type], learning_rate=config.lr,
            max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.grad_accum, max_length=config.max_length,
            warmup_steps=config.warmup_steps, max_grad_norm=config.max_grad_norm, lr_scheduler_type="linear",
            seed=config.seed, data_seed=config.seed, use_cpu=device == "cpu", bf16=_use_bf16(config),
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
            dataset_num_proc=None, remove_unused_columns=False,
        )
        verbosity = hf_logging.get_verbosity()
        bars_were_off = datasets.utils.are_progress_bars_disabled()
        hf_logging.set_verbosity_error()
        datasets.utils.disable_progress_bars()  # a job's log is not a terminal
        try:
            trainer = DPOTrainer(
                model=model, ref_model=reference, args=args, train_dataset=preference_dataset(examples),
                processing_class=tokenizer, callbacks=[_Report()],
            )
            trainer.remove_callback(PrinterCallback)  # disable_tqdm prints every log dict otherwise
            output = trainer.train()
        finally:
            hf_logging.set_verbosity(verbosity)
            if not bars_were_off:
                datasets.utils.enable_progress_bars()
    if stopped["at"] is not None:
        raise TrainingStopped(f"stopped at step {stopped['at']}")
    model = trainer.model
    model.eval()
    last = curve[-min(10, len(curve)):] if curve else []
    mean = lambda key: sum(p[key] for p in last if key in p) / max(1, sum(key in p for p in last)) if last else None  # noqa: E731
    metrics = {
        "method": "dpo",
        "pairs": len(examples),
        "steps": output.global_step,
        "train_loss": float(output.training_loss),
        "loss_last": mean("loss"),
        "reward_accuracy_last": mean("rewards/accuracies"),
        "reward_margin_last": mean("rewards/margins"),
        "seconds": time.perf_counter() - started,
        "device": device,
    }
    meta = {"method": "dpo", "parent": str(policy_path), "reference": str(reference_path), "config": config.as_dict(),
            "metrics": metrics}
    path = save_policy(model.to("cpu"), tokenizer, Path(out_dir), meta=meta)
    return UpdateResult(path=str(path), metrics=metrics, curve=curve)


__all__ = ["preference_dataset", "train_dpo"]
