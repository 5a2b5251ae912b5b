"""Wall time of one on-policy round's engine stages on this machine (CPU unless a GPU is present).

Builds the demo policy on the PRD Vicuna80 answers, samples K=4 completions for the 80 questions,
labels all pairs with a scripted "longer is better" annotator, retrains a MiniLM reward model on
them, and times one DPO, one PPO and one best-of-N update and evaluate_policy. Prints a table and
three sample generations. Usage: python bench/policy_round.py [--steps N] [--threads T] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PRD = (
    Path(os.environ.get("PREFLOOP_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
    / "PRD"
    / "vicuna80"
)


def prd_texts() -> tuple[list[str], list[tuple[str, str]]]:
    questions = {}
    for line in (PRD / "prompts" / "vicuna_questions.jsonl").read_text().splitlines():
        row = json.loads(line)
        questions[row["question_id"]] = row["text"]
    pairs = []
    for path in sorted((PRD / "generations").glob("answer_*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            pairs.append((questions[row["question_id"]], row["text"]))
    return list(questions.values()), pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--skip", default="", help="comma list of stages to skip: rm,dpo,ppo,bon,eval")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from rewards.ml.config import RewardTrainConfig
    from rewards.ml.data import PreferencePair
    from rewards.ml.score import RewardScorer
    from rewards.ml.train import train_reward_model
    from training.ml.best_of_n import train_best_of_n
    from training.ml.config import BestOfNConfig, DemoPolicyConfig, DPOConfig, PPOConfig, SamplerParams
    from training.ml.data import PreferenceExample
    from training.ml.dpo import train_dpo
    from training.ml.metrics import evaluate_policy
    from training.ml.policy import build_demo_policy
    from training.ml.ppo import train_ppo
    from training.ml.sampling import TransformersSampler

    skip = set(filter(None, args.skip.split(",")))
    out = Path(args.out or tempfile.mkdtemp(prefix="prefloop-bench-"))
    shutil.rmtree(out, ignore_errors=True)
    questions, texts = prd_texts()
    times: dict[str, tuple[float, float]] = {}
    config = DemoPolicyConfig() if args.steps is None else DemoPolicyConfig(steps=args.steps)

    def timed(name, fn):
        started, cpu = time.perf_counter(), time.process_time()
        value = fn()
        times[name] = (time.perf_counter() - started, time.process_time() - cpu)
        print(f"{name}: {times[name][0]:.1f} s wall, {times[name][1]:.1f} s CPU", flush=True)
        return value

    policy = timed("build demo policy", lambda: build_demo_policy(texts, out / "policy-0", config=config))
    print("demo policy:", policy.metrics, flush=True)
    params = SamplerParams()
    sampler = TransformersSampler(policy.path)
    groups = timed("sample 80 prompts x K=4", lambda: sampler.generate(questions, n=4, params=params))
    lengths = [s.num_tokens for g in groups for s in g]
    print(
        f"samples: mean tokens {statistics.mean(lengths):.1f}, stop share "
        f"{statistics.mean(s.finish_reason == 'stop' for g in groups for s in g):.2f}"
    )
    for q, g in list(zip(questions, groups))[:3]:
        print(f"  Q: {q}\n  A: {g[0].text}\n")
    examples = []
    for q, g in zip(questions, groups):
        for a, b in itertools.combinations(g, 2):
            if len(a.text) != len(b.text):
                long, short = (a, b) if len(a.text) > len(b.text) else (b, a)
                examples.append(PreferenceExample(q, long.text, short.text))
    print(f"pairs (all pairs, longer preferred): {len(examples)}")
    reward_fn = lambda prompts, responses: [len(r.split()) / 20 for r in responses]
    if "rm" not in skip:
        pairs = [
            PreferencePair(prompt=e.prompt, chosen=e.chosen, rejected=e.rejected, group=e.prompt) for e in examples
        ]
        rm = timed(
            "reward model retrain (MiniLM, 1 epoch)",
            lambda: train_reward_model(
                RewardTrainConfig(max_length=192, eval_fraction=0.0), pairs, [], output_dir=out / "rm"
            ),
        )
        scorer = RewardScorer(model=rm.model, tokenizer=rm.tokenizer, max_length=192)
        reward_fn = scorer.score
    if "dpo" not in skip:
        dpo = timed(
            f"DPO update ({len(examples)} pairs)",
            lambda: train_dpo(
                policy_path=policy.path,
                reference_path=policy.path,
                examples=examples,
                out_dir=out / "policy-dpo",
                config=DPOConfig(),
            ),
        )
        print("dpo:", dpo.metrics)
    if "ppo" not in skip:
        ppo = timed(
            "PPO update",
            lambda: train_ppo(
                policy_path=policy.path,
                reference_path=policy.path,
                prompts=questions,
                reward_fn=reward_fn,
                out_dir=out / "policy-ppo",
                config=PPOConfig(),
            ),
        )
        print("ppo:", ppo.metrics)
    if "bon" not in skip:
        bon = timed(
            "best-of-N update",
            lambda: train_best_of_n(
                policy_path=policy.path,
                prompts=questions,
                reward_fn=reward_fn,
                out_dir=out / "policy-bon",
                config=BestOfNConfig(),
            ),
        )
        print("best-of-n:", bon.metrics)
    if "eval" not in skip and "dpo" not in skip:
        metrics = timed(
            "evaluate_policy (80 prompts, n=1, vs reference and previous)",
            lambda: evaluate_policy(
                policy_path=dpo.path,
                reference_path=policy.path,
                previous_path=policy.path,
                prompts=questions,
                reward_fn=reward_fn,
                params=params,
            ),
        )
        print("evaluate_policy(dpo):", metrics)
    # On a shared machine wall time depends on the neighbours; process CPU time (all threads) does not.
    print("\n| stage | wall s | CPU s |\n|---|---|---|")
    for name, (wall, cpu) in times.items():
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
    print(f"\ntorch threads: {torch.get_num_threads()}, cpu count: {os.cpu_count()}, load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
