"""Wall time of full loop rounds on CPU, on real data, and the metrics they produce.

    .venv/bin/python bench/loop_round.py [--method dpo|ppo|best_of_n] [--rounds 2] [--k 5] [--pairs 8]
        [--retrain bounded|full] [--no-from-scratch] [--prompts N] [--rm-max-steps N] [--update-steps N]

A fresh database (a temporary SQLite file unless DATABASE_URL is set) gets the PRD Vicuna80
questions and answers; the demo policy is built on those answers; then each round samples from
the current policy, a scripted annotator votes through the voting API (it prefers the longer
answer, a known human bias, so the effect of the update is visible), the reward model retrains on
the round's setting (bounded by default: warm start from the previous version, this round's pairs
plus a replay sample; the first round trains on everything) and the policy is updated. After each
round the same votes also train a reward model from scratch on every vote (not made current), so
the bounded figure prints next to the from-scratch one. Jobs run in this process as a worker
would run them. Prints the time of each step and the metrics of each round (JSON last).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="dpo", choices=["dpo", "ppo", "best_of_n"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=5, help="completions per prompt")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per prompt (random strategy)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--policy-steps", type=int, help="demo policy SFT steps (default: DemoPolicyConfig's)")
    parser.add_argument(
        "--retrain", default="bounded", choices=["bounded", "full"], help="the rounds' reward-model step"
    )
    parser.add_argument("--no-from-scratch", action="store_true", help="skip the from-scratch reward model per round")
    parser.add_argument("--prompts", type=int, default=1000, help="prompts sampled per round")
    parser.add_argument("--rm-max-steps", type=int, help="reward-model optimiser steps (smoke runs)")
    parser.add_argument("--update-steps", type=int, help="policy-update steps (smoke runs)")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="prefloop-loop-bench-"))
    os.environ.setdefault("PREFLOOP_VAR_DIR", str(var))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from annotate.models import Comparison, User
    from annotate.services.importing import import_file
    from annotate.services.projects import membership_set, project_create
    from training import services
    from training.models import Policy, Round
    from training.policies import request_demo_policy

    settings.PREFLOOP_JOB_BACKEND = "immediate"
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    source = Path(settings.PREFLOOP_DATA_DIR) / "PRD" / "vicuna80"
    project = project_create(name="loop bench", overlap_target=1)
    import_file(project=project, path=source)
    annotator = User.objects.create_user("scripted", password="x", role=User.Role.ANNOTATOR)
    membership_set(project=project, user=annotator, role="annotator")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    config = {"steps": args.policy_steps} if args.policy_steps else {}
    policy, _ = request_demo_policy(project=project, config=config)
    policy.refresh_from_db()
    if policy.status != Policy.Status.READY:
        raise SystemExit(f"demo policy failed: {policy.error}")
    timings["demo_policy_build_s"] = time.perf_counter() - t
    print(f"demo policy v{policy.version}: {timings['demo_policy_build_s']:.1f} s, {policy.metrics}", flush=True)

    rounds = []
    for _ in range(args.rounds):
        params = {
            "k": args.k,
            "pair_strategy": "random",
            "pairs_per_prompt": args.pairs,
            "max_new_tokens": args.max_new_tokens,
            "prompts": args.prompts,
            "auto_advance": False,
            "reward_retrain": args.retrain,
            "min_held_out_pairs": 0,
            "reward_model": {"max_steps": args.rm_max_steps} if args.rm_max_steps else {},
            "update": {"max_steps": args.update_steps} if args.update_steps else {},
        }
        t0 = time.perf_counter()
        round_, _ = services.start_round(project=project, method=args.method, params=params)
        round_.refresh_from_db()
        t1 = time.perf_counter()
        if round_.state != Round.State.LABELING:
            raise SystemExit(f"round {round_.number} sampling: {round_.state} {round_.reason}")
        votes = 0
        while True:
            assignment = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]
            if assignment is None:
                break
            a, b = (r["text"] for r in assignment["responses"])
            choice = "a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"
            response = client.post(
                f"/api/assignments/{assignment['assignment_id']}/vote/",
                {"choice": choice, "idempotency_key": f"b{assignment['assignment_id']}"},
                format="json",
            )
            assert response.status_code == 201, response.content
            votes += 1
        t2 = time.perf_counter()
        services.advance_round(round_=round_)
        round_.refresh_from_db()
        t3 = time.perf_counter()
        if round_.state == Round.State.GUARDED:  # a bench measures the round: note the guard, go on
            print(f"round {round_.number}: {round_.reason}; overridden for the benchmark", flush=True)
            services.override_guard(round_=round_, who="bench/loop_round.py")
            round_.refresh_from_db()
        if round_.state != Round.State.DONE:
            raise SystemExit(f"round {round_.number}: {round_.state} {round_.reason}")
        comparisons = Comparison.objects.filter(project=project, round=round_.number).count()
        rm_seconds = _job_seconds(round_, "train_reward_model")
        scratch = None if args.no_from_scratch else _from_scratch(round_, args.rm_max_steps)
        row = {
            "round": round_.number,
            "method": args.method,
            "comparisons": comparisons,
            "votes": votes,
            "sampling_s": round(t1 - t0, 1),
            "labeling_scripted_s": round(t2 - t1, 1),
            "reward_model_s": rm_seconds,
            "update_and_eval_s": round((t3 - t2) - (rm_seconds or 0), 1),
            "round_wall_s": round(t3 - t0, 1),
            "round_wall_without_labeling_s": round((t3 - t0) - (t2 - t1), 1),
            "reward_model_step": round_.metrics.get("reward_model_step"),
            "reward_model_from_scratch": scratch,
            "reward_model": round_.metrics.get("reward_model"),
            "eval_before": round_.metrics.get("eval_before"),
            "eval": round_.metrics.get("eval"),
            "update": round_.metrics.get("update"),
            "sampling": round_.metrics.get("sampling"),
        }
        rounds.append(row)
        print(
            json.dumps(
                {
                    k: row[k]
                    for k in (
                        "round",
                        "comparisons",
                        "votes",
                        "sampling_s",
                        "labeling_scripted_s",
                        "reward_model_s",
                        "update_and_eval_s",
                        "round_wall_s",
                    )
                }
            ),
            flush=True,
        )
        print("  eval before:", row["eval_before"], "\n  eval after: ", row["eval"], flush=True)
        print(_reward_model_line(row), flush=True)
    # The human (scripted) verdict on round n's policy comes from round n+1's cross pairs.
    for r in Round.objects.filter(project=project).order_by("number"):
        if r.metrics.get("human_win_rate"):
            rounds[r.number - 1]["human_win_rate"] = r.metrics["human_win_rate"]
    samples = _examples(project)
    result = {
        "timings": timings,
        "rounds": rounds,
        "samples": samples,
        "database": settings.DATABASES["default"]["ENGINE"],
    }
    print(json.dumps(result, indent=1, default=str))
    return result


def _from_scratch(round_, max_steps: int | None) -> dict:
    """The round's votes (and every earlier one) trained from the base model, timed; never made current."""
    from rewards import services as rewards_services

    snapshot = round_.reward_model.data_snapshot["filters"]
    options = {"until": snapshot["until"], **({"max_steps": max_steps} if max_steps else {})}
    t = time.perf_counter()
    queued, _ = rewards_services.request_training(
        project=round_.project, options=options, trigger="bench:from-scratch", enqueue=False
    )
    ready = rewards_services.run_training(reward_model_id=queued.pk)
    seconds = round(time.perf_counter() - t, 1)
    return {
        "seconds": seconds,
        "version": ready.version,
        "train_pairs": ready.metrics.get("train_pairs"),
        "accuracy": ready.metrics.get("accuracy"),
        "accuracy_ci": ready.metrics.get("accuracy_ci"),
        "pairs": ready.metrics.get("pairs"),
    }


def _reward_model_line(row: dict) -> str:
    rm, step, scratch = (row["reward_model"] or {}, row["reward_model_step"] or {}, row["reward_model_from_scratch"])
    line = f"  reward model ({step.get('mode')}): {row['reward_model_s']} s, {_quality(rm)}"
    if scratch:
        line += f"\n  from scratch (all votes):  {scratch['seconds']} s, {_quality(scratch)}"
    return line


def _quality(figures: dict) -> str:
    low, high = figures.get("accuracy_ci") or (float("nan"), float("nan"))
    accuracy = figures.get("accuracy")
    return (
        f"{figures.get('train_pairs')} train pairs, held-out accuracy "
        f"{accuracy if accuracy is None else round(accuracy, 3)} [{low:.3f}, {high:.3f}] on {figures.get('pairs')} pairs"
    )


def _job_seconds(round_, kind: str) -> float | None:
    from prefloop.jobs.models import Job

    ids = [e["job_id"] for e in round_.history if e.get("job_id")]
    job = Job.objects.filter(pk__in=ids, kind=kind).first()
    if job and job.started_at and job.finished_at:
        return round((job.finished_at - job.started_at).total_seconds(), 1)
    return None


def _examples(project) -> list[dict]:
    from annotate.models import Completion

    out = []
    for c in Completion.objects.filter(prompt__project=project, source="policy").order_by("round", "id")[::97][:6]:
        out.append({"round": c.round, "policy": c.model_name, "prompt": c.prompt.text[:120], "text": c.text[:300]})
    return out


if __name__ == "__main__":
    main()
