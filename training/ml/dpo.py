"""DPO update: the round's labelled pairs → a new policy, with trl's DPOTrainer against the frozen reference.

L_DPO = −E log σ(β [(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])
(Rafailov et al. 2023; loss_type picks trl's variant). A policy with a chat template gets trl's
conversational format (prompt turns, one assistant turn each side; trl applies the template with
the generation prompt, as sampling did); one without gets the plain format (`format_prompt`,
`join_response`, trl appends the eos). Prompts too long for max_length are left-truncated first
(rewards.ml.chat.encode_prompt), never dropped. With config.lora the update trains LoRA adapters
and the reference is the adapter's base with the adapters disabled (no second copy in memory).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from training.ml.config import DPOConfig
from training.ml.data import PreferenceExample, join_response
from training.ml.results import TrainingStopped, UpdateResult

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, dict], None]
_CURVE_KEYS = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "logps/chosen",
    "logps/rejected",
    "learning_rate",
    "grad_norm",
)


def _use_bf16(config: DPOConfig) -> bool:
    import torch

    if config.bf16 is not None:
        return config.bf16 and torch.cuda.is_available()
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _longest_response(tokenizer, example: PreferenceExample) -> int:
    return max(
        len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"])
        for t in (example.chosen, example.rejected)
    )


def preference_dataset(examples: Sequence[PreferenceExample], tokenizer=None, *, max_length: int | None = None):
    """(trl dataset, prompts truncated): conversational rows when the tokenizer has a chat template, else
    trl's standard explicit-prompt format {prompt, chosen, rejected} strings.

    A prompt is left-truncated so that it and its longer response fit max_length (the prompt keeps
    at least half of it; trl cuts a response that still does not fit at its end).
    """
    from datasets import Dataset

    from rewards.ml.chat import as_messages, encode_prompt, has_chat_template, render_prompt, template_messages

    chat = tokenizer is not None and has_chat_template(tokenizer)
    rows: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    truncated = 0
    for example in examples:
        messages = as_messages(example.prompt)
        if tokenizer is not None and max_length is not None:
            budget = max(max_length // 2, max_length - _longest_response(tokenizer, example) - 8)
            rendered = encode_prompt(tokenizer, messages, max_tokens=budget)
            truncated += rendered.truncated
            messages = rendered.messages
        if chat:
            rows["prompt"].append(template_messages(tokenizer, messages))
            rows["chosen"].append([{"role": "assistant", "content": example.chosen.strip()}])
            rows["rejected"].append([{"role": "assistant", "content": example.rejected.strip()}])
        else:
            rows["prompt"].append(render_prompt(tokenizer, messages))
            rows["chosen"].append(join_response(example.chosen))
            rows["rejected"].append(join_response(example.rejected))
    return Dataset.from_dict(rows), truncated


def _report_callback(
    curve: list[dict], stopped: dict, progress: Progress | None, should_stop: Callable[[], bool] | None
):
    """A trainer callback that appends each logged step to `curve`, reports it, and stops on request."""
    from transformers import TrainerCallback

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

    return _Report()


def _trl_args(config: DPOConfig, scratch: str, device: str):
    """trl's DPOConfig for one update: every step logged, nothing saved, no progress bars."""
    from trl import DPOConfig as TrlDPOConfig

    return TrlDPOConfig(
        output_dir=scratch,
        beta=config.beta,
        loss_type=[config.loss_type],
        learning_rate=config.lr,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_length=config.max_length,
        warmup_steps=config.warmup_steps,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=_use_bf16(config),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
        remove_unused_columns=False,
        activation_checkpointing=config.gradient_checkpointing,
    )


def _summary(
    curve: list[dict], output, pair_count: int, truncated: int, config: DPOConfig, started: float, device: str
) -> dict:
    """The update's metrics: trl's training loss and the means of the last ten logged steps."""
    last = curve[-min(10, len(curve)) :] if curve else []
    mean = lambda key: sum(p[key] for p in last if key in p) / max(1, sum(key in p for p in last)) if last else None
    return {
        "method": "dpo",
        "pairs": pair_count,
        "prompts_truncated": truncated,
        "lora": config.lora is not None,
        "steps": output.global_step,
        "train_loss": float(output.training_loss),
        "loss_last": mean("loss"),
        "reward_accuracy_last": mean("rewards/accuracies"),
        "reward_margin_last": mean("rewards/margins"),
        "seconds": time.perf_counter() - started,
        "device": device,
    }


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
    The trainer block stays whole: quieting transformers/datasets and restoring them in `finally`
    must bracket exactly the trainer's construction and run.
    """
    import datasets
    import torch
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import DPOTrainer

    from training.ml.policy import load_for_update, save_policy

    examples = [e for e in examples if e.chosen.strip() != e.rejected.strip()]
    if not examples:
        raise ValueError("no preference examples (pairs with identical sides are left out)")
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer, reference, lineage = load_for_update(
        policy_path,
        reference_path,
        device=device,
        lora=config.lora,
        gradient_checkpointing=config.gradient_checkpointing,
        reference_dtype=torch.bfloat16 if _use_bf16(config) else torch.float32,
    )
    dataset, truncated = preference_dataset(examples, tokenizer, max_length=config.max_length)
    model.train()
    curve: list[dict] = []
    stopped = {"at": None}

    report = _report_callback(curve, stopped, progress, should_stop)

    with tempfile.TemporaryDirectory(prefix="prefloop-dpo-") as scratch:
        args = _trl_args(config, scratch, device)
        verbosity = hf_logging.get_verbosity()
        bars_were_off = datasets.utils.are_progress_bars_disabled()
        hf_logging.set_verbosity_error()
        datasets.utils.disable_progress_bars()  # a job's log is not a terminal
        try:
            trainer = DPOTrainer(
                model=model,
                ref_model=reference,
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
                callbacks=[report],
            )
            if reference is None and "ref" in getattr(trainer.model, "peft_config", {}):
                # trl copies a loaded adapter into a "ref" adapter; the loop's reference is the base
                # (adapters disabled), which trl uses once no "ref" adapter exists.
                trainer.model.delete_adapter("ref")
                trainer.model.set_adapter("default")
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
    metrics = _summary(curve, output, len(examples), truncated, config, started, device)
    meta = {
        "method": "dpo",
        "parent": str(policy_path),
        "reference": str(reference_path),
        "config": config.as_dict(),
        "metrics": metrics,
        **lineage,
    }
    path = save_policy(model.to("cpu"), tokenizer, Path(out_dir), meta=meta)
    return UpdateResult(path=str(path), metrics=metrics, curve=curve)


__all__ = ["preference_dataset", "train_dpo"]
