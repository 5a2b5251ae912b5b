"""Leaderboard benchmark: 1,000,000 synthetic battles over 100 systems, prefloop vs arena-rank and choix.

Times, in one run: (a) collapsing battles to pair counts, (b) our BT fit, (c) our 100-round
bootstrap; choix's dense count-matrix solver (ilsr_pairwise_dense) on the same counts, for the fit
and for the same 100 resamples; arena-rank (LMArena's published method, JAX) preparing its
dataset from the battle DataFrame, fitting, and its sandwich CI, in a child process with a
timeout so a hang cannot stall the bench (its bootstrap, forked workers, with --arena-bootstrap).
Prints times, ratios, the largest rating difference against each peer and peak memory.

    .venv/bin/python bench/leaderboard.py                       # 1M battles, 100 systems
    .venv/bin/python bench/leaderboard.py --file                # also load the same battles from JSONL
    .venv/bin/python bench/leaderboard.py --db 200000           # also: votes in PostgreSQL → counts (SQL GROUP BY)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/prefloop_bench_leaderboard"
WINNER = np.array(["model_a", "tie", "model_b"])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_battles(battles: int, systems: int, seed: int):
    """Strengths ~ N(0, 1) (natural units, ~ ±280 Elo), uniform random pairs, 10 % ties."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, systems)
    a = rng.integers(0, systems, battles)
    b = (a + rng.integers(1, systems, battles)) % systems
    p = 1.0 / (1.0 + np.exp(-(strength[a] - strength[b])))
    outcome = np.where(rng.random(battles) < 0.1, 1, np.where(rng.random(battles) < p, 0, 2))
    return a, b, outcome, [f"system-{i:03d}" for i in range(systems)]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def run_ours(a, b, outcome, models, rounds: int, seed: int) -> dict:
    from annotate.leaderboard import LeaderboardOptions, PairCounts, compute_leaderboard

    # Warm BLAS/LAPACK (thread pools, first-call page faults) on a toy problem: not the work.
    compute_leaderboard(PairCounts.from_records([("x", "y", "a", 2), ("x", "y", "b", 1)]), options=LeaderboardOptions(bootstrap=2))
    counts, t_aggregate = timed(PairCounts.from_arrays, a, b, outcome, models)
    fit, t_fit = timed(compute_leaderboard, counts, options=LeaderboardOptions(bootstrap=0))
    full, t_full = timed(compute_leaderboard, counts, options=LeaderboardOptions(bootstrap=rounds, seed=seed))
    return {
        "counts": counts,
        "ratings": {r.model: r.rating for r in fit.ratings},
        "boot": {r.model: (r.lower, r.upper) for r in full.ratings},
        "t_aggregate": t_aggregate,
        "t_fit": t_fit,
        "t_fit_and_bootstrap": t_full,
        "pairs": len(counts.pairs),
        "peak_mb": peak_mb(),
    }


def run_choix(counts, rounds: int, seed: int) -> dict | None:
    try:
        import choix
    except ImportError:
        return None
    from annotate.leaderboard.bootstrap import resample_counts

    def elo(params):
        return 1000.0 + 400.0 / np.log(10.0) * (params - params.mean())

    wins, t_fit = timed(counts.win_matrix)
    params, t = timed(choix.ilsr_pairwise_dense, wins, alpha=0.0, tol=1e-10, max_iter=1000)
    t_fit += t
    start = time.perf_counter()
    samples = resample_counts(counts, rounds=rounds, rng=np.random.default_rng(seed))
    boot = np.array([choix.ilsr_pairwise_dense(counts.win_matrix(s), alpha=0.0, tol=1e-10, max_iter=1000) for s in samples])
    t_boot = time.perf_counter() - start
    return {"ratings": dict(zip(counts.models, elo(params))), "t_fit": t_fit, "t_bootstrap": t_boot, "boot": boot}


def run_arena(a, b, outcome, models, *, timeout: int, bootstrap: int) -> dict:
    """arena-rank in a child process (its own peak memory, and a timeout against hangs)."""
    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as folder:
        data = Path(folder) / "battles.npz"
        np.savez(data, a=a, b=b, outcome=outcome, models=np.array(models))
        command = [sys.executable, __file__, "--child-arena", str(data), "--arena-bootstrap", str(bootstrap)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def arena_child(path: str, bootstrap: int) -> None:
    import pandas as pd

    start = time.perf_counter()
    from arena_rank.models.bradley_terry import BradleyTerry
    from arena_rank.utils.data_utils import PairDataset

    t_import = time.perf_counter() - start
    data = np.load(path)
    models = data["models"]
    frame = pd.DataFrame({"model_a": models[data["a"]], "model_b": models[data["b"]], "winner": WINNER[data["outcome"]]})
    dataset, t_prepare = timed(PairDataset.from_pandas, frame)
    model = BradleyTerry(n_competitors=dataset.n_competitors)
    _, t_fit = timed(model.fit, dataset)
    result, t_ci = timed(model.compute_ratings_and_cis, dataset, ci_method="sandwich")
    out = {
        "ratings": dict(zip(result["competitors"], map(float, result["ratings"]))),
        "t_import": t_import, "t_prepare": t_prepare, "t_fit": t_fit, "t_sandwich": t_ci, "peak_mb": peak_mb(),
    }
    if bootstrap:
        boot_model = BradleyTerry(n_competitors=dataset.n_competitors)
        _, out["t_bootstrap"] = timed(boot_model.compute_ratings_and_cis, dataset, ci_method="bootstrap", num_bootstrap=bootstrap)
    print(json.dumps(out))


def run_db(url: str, votes: int, systems: int, seed: int) -> dict:
    """Votes in PostgreSQL (bulk-inserted once, kept for re-runs) → pair counts by SQL GROUP BY."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from annotate.leaderboard.data import project_pair_counts
    from annotate.models import Comparison, ComparisonItem, Completion, Project, Prompt, Vote

    call_command("migrate", verbosity=0)
    project_name = f"bench-leaderboard-{votes}-{systems}"
    project = Project.objects.filter(name=project_name).first()
    t_load = 0.0
    if project is None or Vote.objects.filter(comparison__project=project).count() != votes:
        start = time.perf_counter()
        Project.objects.filter(name=project_name).delete()
        project = Project.objects.create(name=project_name)
        a, b, outcome, models = synthetic_battles(votes, systems, seed)
        prompts = Prompt.objects.bulk_create(Prompt(project=project, key=f"p{k}", text="q") for k in range(100))
        completions = Completion.objects.bulk_create(
            Completion(prompt=p, key=m, model_name=m, text="answer") for p in prompts for m in models
        )
        by = {(c.prompt_id, c.model_name): c.pk for c in completions}
        per_comparison = 4
        comparisons, pending = [], []
        for k in range(0, votes, per_comparison):
            prompt = prompts[(k // per_comparison) % len(prompts)]
            pending.append((by[(prompt.pk, models[a[k]])], by[(prompt.pk, models[b[k]])]))
            comparisons.append(Comparison(project=project, prompt=prompt, key=f"{k}"))
        comparisons = Comparison.objects.bulk_create(comparisons, batch_size=5000)
        ComparisonItem.objects.bulk_create(
            (ComparisonItem(comparison=c, completion_id=side, position=pos) for c, pair in zip(comparisons, pending) for pos, side in enumerate(pair)),
            batch_size=10000,
        )
        rows = []
        for k in range(votes):
            first, second = pending[k // per_comparison]
            choice = ("a", "tie", "b")[outcome[k]]
            winner, loser = {"a": (first, second), "b": (second, first)}.get(choice, (None, None))
            rows.append(Vote(
                comparison=comparisons[k // per_comparison], external_annotator=f"v{k}", source="imported", choice=choice,
                shown_order=[first, second], winner_id=winner, loser_id=loser,
            ))
        Vote.objects.bulk_create(rows, batch_size=10000)
        t_load = time.perf_counter() - start
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics, as autovacuum keeps them in a live database
    project_pair_counts(project)  # warm the connection and the buffer cache once
    t_aggregate = min(timed(project_pair_counts, project)[1] for _ in range(3))
    counts = project_pair_counts(project)
    return {"votes": votes, "t_insert": t_load, "t_aggregate": t_aggregate, "battles": counts.total, "pairs": len(counts.pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--systems", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=300, help="seconds before arena-rank is given up on")
    parser.add_argument("--arena-bootstrap", type=int, default=0, help="also run arena-rank's bootstrap (forked workers) with N rounds")
    parser.add_argument("--no-arena", action="store_true")
    parser.add_argument("--file", action="store_true", help="also time reading the battles from an Arena JSONL file")
    parser.add_argument("--db", type=int, default=0, metavar="VOTES", help="also time SQL aggregation of VOTES votes in PostgreSQL")
    parser.add_argument("--db-url", default=DEFAULT_DB)
    parser.add_argument("--child-arena", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_arena:
        arena_child(args.child_arena, args.arena_bootstrap)
        return

    a, b, outcome, models = synthetic_battles(args.battles, args.systems, args.seed)
    print(f"{args.battles:,} battles over {args.systems} systems (seed {args.seed}), {args.rounds}-round bootstrap")
    ours = run_ours(a, b, outcome, models, args.rounds, args.seed)
    ours_total = ours["t_aggregate"] + ours["t_fit_and_bootstrap"]
    print(f"prefloop   aggregate {ours['t_aggregate']:.3f} s ({ours['pairs']} pairs) | fit {ours['t_fit']:.4f} s | "
          f"fit + {args.rounds}-round CIs {ours['t_fit_and_bootstrap']:.3f} s | end to end {ours_total:.3f} s | peak {ours['peak_mb']:.0f} MB")

    if args.file:
        from annotate.leaderboard import load_battles

        with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as folder:
            path = Path(folder) / "battles.jsonl"
            with open(path, "w") as out:
                for x, y, o in zip(a.tolist(), b.tolist(), outcome.tolist()):
                    out.write(f'{{"model_a": "{models[x]}", "model_b": "{models[y]}", "winner": "{WINNER[o]}"}}\n')
            size_mb = path.stat().st_size / 1e6
            log, t_read = timed(load_battles, path)
            _, t_counts = timed(log.pair_counts)
        print(f"prefloop   read Arena JSONL ({size_mb:.0f} MB) {t_read:.2f} s + counts {t_counts:.3f} s")

    choix_result = run_choix(ours["counts"], args.rounds, args.seed)
    if choix_result is None:
        print("choix      not installed (pip install choix)")
    else:
        diff = max(abs(choix_result["ratings"][m] - r) for m, r in ours["ratings"].items())
        print(f"choix      fit {choix_result['t_fit']:.4f} s | {args.rounds} bootstrap fits {choix_result['t_bootstrap']:.3f} s | "
              f"max |Δ rating| vs ours {diff:.2e}")
        print(f"           ratio choix/ours: fit {choix_result['t_fit'] / ours['t_fit']:.1f}x, "
              f"fit + bootstrap {(choix_result['t_fit'] + choix_result['t_bootstrap']) / ours['t_fit_and_bootstrap']:.1f}x")

    if not args.no_arena:
        arena = run_arena(a, b, outcome, models, timeout=args.timeout, bootstrap=args.arena_bootstrap)
        if "error" in arena:
            print(f"arena-rank {arena['error']}")
        else:
            arena_total = arena["t_prepare"] + arena["t_fit"] + arena["t_sandwich"]
            diff = max(abs(arena["ratings"][m] - r) for m, r in ours["ratings"].items())
            print(f"arena-rank import {arena['t_import']:.2f} s | prepare {arena['t_prepare']:.2f} s | fit {arena['t_fit']:.2f} s | "
                  f"sandwich CI {arena['t_sandwich']:.2f} s | end to end {arena_total:.2f} s | peak {arena['peak_mb']:.0f} MB | "
                  f"max |Δ rating| vs ours {diff:.2e}")
            if "t_bootstrap" in arena:
                print(f"           arena-rank bootstrap ({args.arena_bootstrap} rounds) {arena['t_bootstrap']:.2f} s")
            print(f"           ratio arena-rank/ours: fit {arena['t_fit'] / ours['t_fit']:.0f}x, "
                  f"end to end (prepare + fit + CI vs aggregate + fit + {args.rounds}-round bootstrap) {arena_total / ours_total:.1f}x")

    if args.db:
        db = run_db(args.db_url, args.db, args.systems, args.seed)
        inserted = f"inserted in {db['t_insert']:.0f} s, " if db["t_insert"] else ""
        print(f"database   {db['votes']:,} votes in PostgreSQL ({inserted}kept): SQL aggregation to {db['pairs']} pair counts "
              f"{db['t_aggregate']:.3f} s (best of 3) ({db['votes'] / db['t_aggregate']:,.0f} votes/s)")


if __name__ == "__main__":
    main()
