"""Leaderboard benchmark: 1,000,000 synthetic battles over 100 systems, prefloop vs arena-rank and choix.

Times, in one run: (a) collapsing battles to pair counts, (b) our BT fit, (c) our 100-round
bootstrap; choix's dense count-matrix solver (ilsr_pairwise_dense) on the same counts, for the fit
and for the same 100 resamples; arena-rank (LMArena's published method, JAX) preparing its
dataset from the battle DataFrame, fitting, and its sandwich CI, in a child process with a
timeout so a hang cannot stall the bench (its bootstrap, forked workers, with --arena-bootstrap).
Prints times, ratios, the largest rating difference against each peer and peak memory.

    .venv/bin/python bench/leaderboard.py                       # 1M battles, 100 systems
    .venv/bin/python bench/leaderboard.py --file                # also load the same battles from JSONL
    .venv/bin/python bench/leaderboard.py --votes 1000000       # also: votes in PostgreSQL → leaderboard end to end

The lead's idle rerun of issue 16's figures (1M votes in PostgreSQL, 1M-line Arena file, no peers):

    .venv/bin/python bench/leaderboard.py --no-arena --file --votes 1000000

--votes seeds the project once with COPY (100k votes: 3.9 s at load 8) and keeps it in --db-url for re-runs; it
prints ours end to end next to its floors (the same SQL alone through a raw cursor; fit + CIs
alone on the counts) and the previous implementation (two ORM GROUP BYs), best of 3 interleaved.
--file prints the pyarrow reader next to the line-by-line reader on the same 1M-line file.
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
    compute_leaderboard(
        PairCounts.from_records([("x", "y", "a", 2), ("x", "y", "b", 1)]), options=LeaderboardOptions(bootstrap=2)
    )
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
    boot = np.array(
        [choix.ilsr_pairwise_dense(counts.win_matrix(s), alpha=0.0, tol=1e-10, max_iter=1000) for s in samples]
    )
    t_boot = time.perf_counter() - start
    return {"ratings": dict(zip(counts.models, elo(params))), "t_fit": t_fit, "t_bootstrap": t_boot, "boot": boot}


def run_arena(a, b, outcome, models, *, timeout: int, bootstrap: int) -> dict:
    """arena-rank in a child process (its own peak memory, and a timeout against hangs)."""
    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as folder:
        data = Path(folder) / "battles.npz"
        np.savez(data, a=a, b=b, outcome=outcome, models=np.array(models))
        command = [sys.executable, __file__, "--child-arena", str(data), "--arena-bootstrap", str(bootstrap)]
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
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
    frame = pd.DataFrame(
        {"model_a": models[data["a"]], "model_b": models[data["b"]], "winner": WINNER[data["outcome"]]}
    )
    dataset, t_prepare = timed(PairDataset.from_pandas, frame)
    model = BradleyTerry(n_competitors=dataset.n_competitors)
    _, t_fit = timed(model.fit, dataset)
    result, t_ci = timed(model.compute_ratings_and_cis, dataset, ci_method="sandwich")
    out = {
        "ratings": dict(zip(result["competitors"], map(float, result["ratings"]))),
        "t_import": t_import,
        "t_prepare": t_prepare,
        "t_fit": t_fit,
        "t_sandwich": t_ci,
        "peak_mb": peak_mb(),
    }
    if bootstrap:
        boot_model = BradleyTerry(n_competitors=dataset.n_competitors)
        _, out["t_bootstrap"] = timed(
            boot_model.compute_ratings_and_cis, dataset, ci_method="bootstrap", num_bootstrap=bootstrap
        )
    print(json.dumps(out))


def _copy(cursor, table: str, columns: str, lines) -> None:
    """COPY rows (tab-separated text lines) into a table: ~100x faster than INSERTs."""
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) == 100_000:
                copy.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            copy.write("\n".join(chunk) + "\n")


def seed_votes(project_name: str, votes: int, systems: int, seed: int):
    """A project with `votes` imported pairwise votes (4 per comparison, 100 prompts), written with COPY."""
    from django.db import connection, transaction

    from annotate.models import Comparison, ComparisonItem, Completion, Project, Prompt, Vote

    Project.objects.filter(name=project_name).delete()
    project = Project.objects.create(name=project_name)
    a, b, outcome, models = synthetic_battles(votes, systems, seed)
    prompts = Prompt.objects.bulk_create(Prompt(project=project, key=f"p{k}", text="q") for k in range(100))
    completions = Completion.objects.bulk_create(
        Completion(prompt=p, key=m, model_name=m, text="answer") for p in prompts for m in models
    )
    ids = np.array([c.pk for c in completions], dtype=np.int64).reshape(len(prompts), len(models))
    per = 4
    first_vote = np.arange(0, votes, per)
    prompt_of = np.arange(len(first_vote)) % len(prompts)
    side_a, side_b = ids[prompt_of, a[first_vote]], ids[prompt_of, b[first_vote]]
    prompt_ids = [p.pk for p in prompts]
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor under Django's wrapper
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cursor.fetchone()[0]:
            # The rows are generated consistent (every id comes from the rows just written), so the
            # bench skips the per-row deferred foreign-key triggers: a multi-minute seed becomes seconds.
            cursor.execute("SET LOCAL session_replication_role = replica")
        _copy(
            raw,
            Comparison._meta.db_table,
            "project_id, prompt_id, key, round, priority, is_open, imported_votes, gold_label, votes_done, leases_open, is_complete, created_at",
            (
                f"{project.pk}\t{prompt_ids[p]}\t{k}\t0\t0\tt\t{per}\t\t0\t0\tt\tnow"
                for k, p in enumerate(prompt_of.tolist())
            ),
        )
        cursor.execute(f"SELECT id FROM {Comparison._meta.db_table} WHERE project_id = %s ORDER BY id", [project.pk])
        comparison = np.array([row[0] for row in cursor.fetchall()], dtype=np.int64)
        _copy(
            raw,
            ComparisonItem._meta.db_table,
            "comparison_id, completion_id, position",
            (
                f"{c}\t{x}\t{pos}"
                for c, pair in zip(comparison.tolist(), zip(side_a.tolist(), side_b.tolist()))
                for pos, x in enumerate(pair)
            ),
        )
        group = np.arange(votes) // per
        first, second = side_a[group], side_b[group]
        choice = np.array(["a", "tie", "b"])[outcome]
        winner = np.where(outcome == 0, first, second).astype(str)
        loser = np.where(outcome == 0, second, first).astype(str)
        winner[outcome == 1] = loser[outcome == 1] = "\\N"
        _copy(
            raw,
            Vote._meta.db_table,
            "comparison_id, external_annotator, source, aspect, choice, rationale, shown_order, winner_id, loser_id, created_at",
            (
                f"{c}\tv{k}\timported\toverall\t{o}\t\t[{x}, {y}]\t{w}\t{l}\tnow"
                for k, (c, o, x, y, w, l) in enumerate(
                    zip(
                        comparison[group].tolist(),
                        choice.tolist(),
                        first.tolist(),
                        second.tolist(),
                        winner.tolist(),
                        loser.tolist(),
                    )
                )
            ),
        )
    return project


def run_db(url: str, votes: int, systems: int, seed: int, rounds: int) -> dict:
    """Votes in PostgreSQL (seeded once with COPY, kept for re-runs) → leaderboard with `rounds` CIs."""
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
    from django.db import connection, transaction

    from annotate.leaderboard import LeaderboardOptions, PairCounts, compute_leaderboard
    from annotate.leaderboard.data import VoteFilter, pair_counts_sql, project_leaderboard, project_pair_counts
    from annotate.models import Project, Vote

    call_command("migrate", verbosity=0)
    project_name = f"bench-leaderboard-{votes}-{systems}-{seed}"
    project = Project.objects.filter(name=project_name).first()
    t_seed = 0.0
    if project is None or Vote.objects.filter(comparison__project=project).count() != votes:
        project, t_seed = timed(seed_votes, project_name, votes, systems, seed)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics, as autovacuum keeps them in a live database
    options = LeaderboardOptions(bootstrap=rounds, seed=seed)
    sql, params = pair_counts_sql(project, VoteFilter())

    def group_by_only():  # the same statement and session settings, straight through a cursor
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute(sql, params)
            return cursor.fetchall()

    def previous():
        return compute_leaderboard(previous_pair_counts(project), options=options)

    counts = project_pair_counts(project)
    best = {}
    for _ in range(3):  # interleaved, best of 3 each: the machine is shared
        for label, fn in (
            ("group_by", group_by_only),
            ("fit", lambda: compute_leaderboard(counts, options=options)),
            ("ours", lambda: project_leaderboard(project, options=options)),
            ("previous", previous),
        ):
            value, t = timed(fn)
            best[label] = min(best.get(label, t), t)
            if label in ("ours", "previous"):
                best[label + "_ratings"] = {r.model: (r.rating, r.lower, r.upper) for r in value.ratings}
    same = best["ours_ratings"] == best["previous_ratings"]
    # What GROUP BY saves: the same selection fetched as one row per vote, counted in Python (once).
    rows_sql = "\n".join(line for line in sql.splitlines() if not line.startswith("GROUP BY")).replace("count(*)", "1")
    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(rows_sql, params)
        by_rows = PairCounts.from_records(cursor.fetchall())
    compute_leaderboard(by_rows, options=options)
    best["rows"] = time.perf_counter() - start
    best["rows_same_counts"] = bool(np.array_equal(by_rows.counts, counts.counts))
    return {"votes": votes, "t_seed": t_seed, "battles": counts.total, "pairs": len(counts.pairs), "same": same, **best}


def previous_pair_counts(project):
    """The implementation before the single GROUP BY: decisive votes grouped by (winner model, loser
    model) and ties by the comparison's two items, in two ORM queries (kept here as the peer)."""
    from django.db.models import Count, F, FilteredRelation, Q

    from annotate.leaderboard import PairCounts
    from annotate.leaderboard.data import TIES, VoteFilter, _ranked_records, project_votes
    from annotate.models import Vote

    votes = project_votes(project, VoteFilter())
    records = [
        (row["winner__model_name"], row["loser__model_name"], "a", row["n"])
        for row in votes.filter(choice__in=(Vote.Choice.A, Vote.Choice.B))
        .values("winner__model_name", "loser__model_name")
        .annotate(n=Count("id"))
        .order_by()
    ]
    sides = votes.filter(choice__in=TIES).annotate(
        first=FilteredRelation("comparison__items", condition=Q(comparison__items__position=0)),
        second=FilteredRelation("comparison__items", condition=Q(comparison__items__position=1)),
    )
    records += [
        (row["model_a"], row["model_b"], row["choice"], row["n"])
        for row in sides.values(
            "choice", model_a=F("first__completion__model_name"), model_b=F("second__completion__model_name")
        )
        .annotate(n=Count("id"))
        .order_by()
    ]
    records += _ranked_records(votes)
    return PairCounts.from_records(records)


def print_file(a, b, outcome, models) -> None:
    """The same battles as an Arena JSON Lines file: pyarrow reader vs the line-by-line reader."""
    import pyarrow.json as pj

    from annotate.leaderboard import load_battles
    from annotate.leaderboard.battles import _load_line_by_line
    from annotate.leaderboard.battles_arrow import BLOCK_BYTES

    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as folder:
        path = Path(folder) / "battles.jsonl"
        stamps = np.arange(len(a)) * 0.5 + 1.7e9
        with open(path, "w") as out:
            out.writelines(
                f'{{"model_a": "{models[x]}", "model_b": "{models[y]}", "winner": "{WINNER[o]}", "tstamp": {t}}}\n'
                for x, y, o, t in zip(a.tolist(), b.tolist(), outcome.tolist(), stamps.tolist())
            )
        size_mb = path.stat().st_size / 1e6
        load_battles(path)  # warm the page cache and pyarrow's thread pool
        fast, t_fast = timed(load_battles, path)
        _, t_parse = timed(pj.read_json, path, read_options=pj.ReadOptions(block_size=BLOCK_BYTES, use_threads=True))
        slow, t_slow = timed(_load_line_by_line, path, require_style=False)
        _, t_counts = timed(fast.pair_counts)
    same = fast.models == slow.models and all(
        np.array_equal(getattr(fast, k), getattr(slow, k)) for k in ("model_a", "model_b", "outcome", "both_bad")
    )
    print(
        f"file       Arena JSONL, {len(a):,} lines ({size_mb:.0f} MB): pyarrow reader {t_fast:.2f} s | floor: "
        f"pyarrow.json.read_json alone {t_parse:.2f} s (ours at {100 * t_parse / t_fast:.0f} % of it) | "
        f"line-by-line reader (previous) {t_slow:.2f} s: {t_slow / t_fast:.1f}x | counts {t_counts:.3f} s | same arrays: {same}"
    )


def print_db(db: dict, rounds: int) -> None:
    seeded = f"seeded with COPY in {db['t_seed']:.1f} s" if db["t_seed"] else "seeded earlier, kept"
    print(f"database   {db['votes']:,} votes in PostgreSQL ({seeded}; {db['pairs']} pairs), best of 3, interleaved:")
    print(f"           ours end to end (SQL counts + fit + {rounds}-round CIs) {db['ours']:.3f} s")
    print(
        f"           floor: the GROUP BY alone {db['group_by']:.3f} s | fit + CIs alone {db['fit']:.3f} s | "
        f"sum {db['group_by'] + db['fit']:.3f} s (ours at {100 * (db['group_by'] + db['fit']) / db['ours']:.0f} % of it)"
    )
    print(
        f"           previous (two ORM GROUP BYs + same fit) {db['previous']:.3f} s: {db['previous'] / db['ours']:.2f}x ours; "
        f"identical ratings and CIs: {db['same']}"
    )
    print(
        f"           loading rows instead (one row per vote, counted in Python, once) {db['rows']:.3f} s: "
        f"{db['rows'] / db['ours']:.1f}x ours; same counts: {db['rows_same_counts']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--systems", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=300, help="seconds before arena-rank is given up on")
    parser.add_argument(
        "--arena-bootstrap", type=int, default=0, help="also run arena-rank's bootstrap (forked workers) with N rounds"
    )
    parser.add_argument("--no-arena", action="store_true")
    parser.add_argument("--file", action="store_true", help="also time reading the battles from an Arena JSONL file")
    parser.add_argument(
        "--votes",
        "--db",
        dest="db",
        type=int,
        default=0,
        metavar="N",
        help="also: N votes in PostgreSQL (seeded once with COPY, kept) → leaderboard end to end, vs floors and the previous path",
    )
    parser.add_argument("--db-url", default=DEFAULT_DB)
    parser.add_argument("--child-arena", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_arena:
        arena_child(args.child_arena, args.arena_bootstrap)
        return

    print("load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)")
    a, b, outcome, models = synthetic_battles(args.battles, args.systems, args.seed)
    print(f"{args.battles:,} battles over {args.systems} systems (seed {args.seed}), {args.rounds}-round bootstrap")
    ours = run_ours(a, b, outcome, models, args.rounds, args.seed)
    ours_total = ours["t_aggregate"] + ours["t_fit_and_bootstrap"]
    print(
        f"prefloop   aggregate {ours['t_aggregate']:.3f} s ({ours['pairs']} pairs) | fit {ours['t_fit']:.4f} s | "
        f"fit + {args.rounds}-round CIs {ours['t_fit_and_bootstrap']:.3f} s | end to end {ours_total:.3f} s | peak {ours['peak_mb']:.0f} MB"
    )

    if args.file:
        print_file(a, b, outcome, models)

    choix_result = run_choix(ours["counts"], args.rounds, args.seed)
    if choix_result is None:
        print("choix      not installed (pip install choix)")
    else:
        diff = max(abs(choix_result["ratings"][m] - r) for m, r in ours["ratings"].items())
        print(
            f"choix      fit {choix_result['t_fit']:.4f} s | {args.rounds} bootstrap fits {choix_result['t_bootstrap']:.3f} s | "
            f"max |Δ rating| vs ours {diff:.2e}"
        )
        print(
            f"           ratio choix/ours: fit {choix_result['t_fit'] / ours['t_fit']:.1f}x, "
            f"fit + bootstrap {(choix_result['t_fit'] + choix_result['t_bootstrap']) / ours['t_fit_and_bootstrap']:.1f}x"
        )

    if not args.no_arena:
        arena = run_arena(a, b, outcome, models, timeout=args.timeout, bootstrap=args.arena_bootstrap)
        if "error" in arena:
            print(f"arena-rank {arena['error']}")
        else:
            arena_total = arena["t_prepare"] + arena["t_fit"] + arena["t_sandwich"]
            diff = max(abs(arena["ratings"][m] - r) for m, r in ours["ratings"].items())
            print(
                f"arena-rank import {arena['t_import']:.2f} s | prepare {arena['t_prepare']:.2f} s | fit {arena['t_fit']:.2f} s | "
                f"sandwich CI {arena['t_sandwich']:.2f} s | end to end {arena_total:.2f} s | peak {arena['peak_mb']:.0f} MB | "
                f"max |Δ rating| vs ours {diff:.2e}"
            )
            if "t_bootstrap" in arena:
                print(f"           arena-rank bootstrap ({args.arena_bootstrap} rounds) {arena['t_bootstrap']:.2f} s")
            print(
                f"           ratio arena-rank/ours: fit {arena['t_fit'] / ours['t_fit']:.0f}x, "
                f"end to end (prepare + fit + CI vs aggregate + fit + {args.rounds}-round bootstrap) {arena_total / ours_total:.1f}x"
            )

    if args.db:
        print_db(run_db(args.db_url, args.db, args.systems, args.seed, args.rounds), args.rounds)
    print("load average at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
