"""Train a reward model from a preference JSONL file, without Django: the multi-GPU entry point.

    accelerate launch --num_processes 4 -m rewards.ml.cli --pairs export.jsonl --output runs/rm-v7 \
        --base-model /models/deberta-v3-large --bf16 true --batch-size 8 --grad-accum 4

`--pairs` is prefloop's export (docs/export-format.md; `manage.py export_dataset --format jsonl`) or
any JSONL with prompt/chosen/rejected; rows labelled tie/both_bad use response_a/response_b.
Every process runs this same code; accelerate shards the batches. The main process writes the
artifact folder and prints the metrics as JSON last.
"""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import fields
from pathlib import Path

from rewards.ml.config import RewardTrainConfig
from rewards.ml.data import PreferencePair, split_pairs


def read_pairs(path: Path, *, strength_scale: float | None = None) -> list[PreferencePair]:
    opener = gzip.open if path.suffix == ".gz" else open
    pairs: list[PreferencePair] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            tie = row.get("label") in ("tie", "both_bad")
            chosen, rejected = (
                (row.get("response_a"), row.get("response_b")) if tie else (row["chosen"], row["rejected"])
            )
            if chosen is None or rejected is None:
                continue
            strength = row.get("strength") or 0
            pairs.append(
                PreferencePair(
                    prompt=row.get("prompt") or "",
                    chosen=chosen,
                    rejected=rejected,
                    tie=tie,
                    margin=strength / strength_scale if strength_scale and not tie else 0.0,
                    category=row.get("category") or "",
                    group=str(row.get("prompt_id") or row.get("prompt") or ""),
                    pair_id=str(row.get("pair_id") or len(pairs)),
                )
            )
    return pairs


def _arg_type(field_type: str):
    if "bool" in field_type:
        return lambda v: v.strip().lower() in {"1", "true", "yes", "on"}
    if "int" in field_type:
        return int
    if "float" in field_type:
        return float
    return str


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="artifact folder (must not exist)")
    parser.add_argument("--strength-scale", type=float, help="divide vote strength by this for margins")
    for f in fields(RewardTrainConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_arg_type(str(f.type)))
    args = parser.parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in fields(RewardTrainConfig) if getattr(args, f.name) is not None}
    config = RewardTrainConfig(**options)

    from rewards.ml.train import train_reward_model

    pairs = read_pairs(args.pairs, strength_scale=args.strength_scale)
    train, held_out = split_pairs(pairs, eval_fraction=config.eval_fraction, seed=config.seed)
    result = train_reward_model(
        config, train, held_out, output_dir=args.output, log=print, artifact_meta={"pairs_file": str(args.pairs)}
    )
    summary = {
        "artifact_path": result.artifact_path,
        "metrics": {k: v for k, v in result.metrics.items() if k != "reliability"},
    }
    if result.artifact_path:  # the main process only
        (Path(result.artifact_path) / "metrics.json").write_text(
            json.dumps({**summary, "curves": result.curves}, indent=2)
        )
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
