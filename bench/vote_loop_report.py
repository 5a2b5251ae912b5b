"""bench/vote_loop.py's report: latency and throughput per phase, CPU per loop, the share of the
floor and of the two-GET baseline, the load sweep and its best phase, the training slowdown, and
the checks against the database. Printing only: the phases are measured in vote_loop.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vote_loop import Phase, Recorder, Run, ServerConfig

BASELINES = {  # two trivial GETs per loop
    "health": ("GET /healthz/ (first middleware: SELECT 1 and a cache round trip, no auth)", "/healthz/"),
    "projects": ("GET /api/projects/ (DRF, token auth, one membership query)", "/api/projects/"),
}
REQUESTS_PER_LOOP = {"baseline": 2}  # vote_loop.main sets "vote" from --loop


@dataclass(frozen=True)
class Stats:
    count: int
    per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def window_stats(samples: list[tuple[float, float]], phase: Phase) -> Stats:
    """Samples that started and finished inside the measuring window."""
    inside = sorted(s for t, s in samples if t >= phase.start and t + s <= phase.end)
    seconds = phase.end - phase.start
    return Stats(len(inside), len(inside) / seconds, *(1000 * percentile(inside, q) for q in (0.50, 0.95, 0.99)))


def print_stats(label: str, stats: Stats) -> None:
    print(
        f"  {label:<14}{stats.count:>9,}{stats.per_s:>10.1f}{stats.p50_ms:>10.1f}{stats.p95_ms:>10.1f}{stats.p99_ms:>10.1f}"
    )


def print_phase(title: str, rec: Recorder, phase: Phase) -> Stats:
    print(f"\n{title} ({phase.end - phase.start:.0f} s window)")
    print(f"  {'':<14}{'count':>9}{'per s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    loops = window_stats(rec.loops, phase)
    print_stats("loop", loops)
    all_requests = [sample for samples in rec.requests.values() for sample in samples]
    print_stats("requests", window_stats(all_requests, phase))
    for kind, samples in sorted(rec.requests.items()):
        print_stats(f"  {kind}", window_stats(samples, phase))
    print(f"  errors: {dict(rec.errors) or 'none'}" + (f"; no work: {dict(rec.no_work)}" if rec.no_work else ""))
    # Requests that finished inside the window, as loops (two requests each): CPU spent in the
    # window divided by work finished in it, whatever the latency.
    finished = sum(1 for t, s in all_requests if phase.start <= t + s <= phase.end) / REQUESTS_PER_LOOP.get(
        phase.name, 2
    )
    if rec.cpu and finished:
        per_loop = {role: 1000 * seconds / finished for role, seconds in rec.cpu.items()}
        total = sum(per_loop.values())
        print(
            "  CPU per loop (load-independent): "
            + ", ".join(f"{role} {ms:.1f} ms" for role, ms in per_loop.items())
            + f" = {total:.1f} ms -> about {2000 / total:.0f} loops/s if these alone had 2 idle cores"
        )
    return loops


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def checks_from(verify: dict, acked: list[dict]) -> list[Check]:
    return [
        Check(
            "every 201 is one stored vote",
            verify["acked"] == verify["stored"] == verify["stored_distinct"]
            and not verify["acked_not_stored"]
            and not verify["stored_not_acked"]
            and verify["acked"] == len(acked),
            f"acknowledged {verify['acked']}, stored {verify['stored']}, acked-not-stored {verify['acked_not_stored']},"
            f" stored-not-acked {verify['stored_not_acked']}",
        ),
        Check(
            "no comparison over its overlap target",
            not verify["over_target_by_counters"] and not verify["over_target_by_rows"],
            f"over by counters {verify['over_target_by_counters']}, over by rows {verify['over_target_by_rows']}",
        ),
        Check("counters match rows", not verify["counter_drift"], f"comparisons with drift {verify['counter_drift']}"),
    ]


def print_floor(floor: dict) -> None:
    print(
        f"\nfloor: the engine's SQL (next + vote transactions, prepared, same locking) from a tight client,"
        f" {floor['connections']} connections ({floor['seconds']:.0f} s window)"
    )
    print(
        f"  loops/s {floor['per_s']:.1f}, p50 {floor['p50_ms']:.1f} ms, p99 {floor['p99_ms']:.1f} ms"
        + (f"; errors: {floor['errors']}" if floor["errors"] else "")
    )


def report(args, config: ServerConfig | None, runs: dict[str, Run], verify: dict) -> bool:
    server = config.describe() if config else f"external server at {args.url}"
    print(
        f"\nserver: {server}; {os.cpu_count()} cores shared with the client; {args.annotators} annotators;"
        f" PostgreSQL {args.database_url.rsplit('@', 1)[-1]}"
    )
    print(f"load average before the run: {args.load_before} (above ~1 means other work shared the cores)")
    floor = getattr(args, "floor_result", None)
    if floor:
        print_floor(floor)
    alone = runs["vote"]
    shape = "POST vote?next=1 (one request)" if args.loop == "one" else "POST next + POST vote"
    path = "DRF views only (PREFLOOP_FAST_PATH=0)" if args.no_fast_path else "fast path"
    pace = (
        f", think time mean {1000 * alone.think_s:.0f} ms (offered {args.annotators / alone.think_s:.0f} loops/s)"
        if alone.think_s
        else ", closed loop (no think time)"
    )
    loops = print_phase(f"vote loop: {shape}, {path}{pace}", alone.rec, alone.phase)
    base = None
    if "baseline" in runs:
        base = print_phase(f"baseline: 2 x {BASELINES[args.baseline][0]}", runs["baseline"].rec, runs["baseline"].phase)
        if loops.per_s and not alone.think_s:  # a closed loop: throughput is capacity
            print(
                f"\nratio: one vote loop costs {base.per_s / loops.per_s:.2f}x a loop of two trivial authenticated"
                f" requests (throughput); p50 latency {loops.p50_ms / base.p50_ms:.2f}x"
            )
    print_pace_table(args, runs, floor, base)
    if "training" in runs:
        run = runs["training"]
        trained = print_phase(
            f"vote loop while a reward model trains (priority {args.training_priority}, same cores)", run.rec, run.phase
        )
        print(
            f"  training used {run.training_cpu_s:.1f} CPU-s in the window; still running at the end: {run.training_alive}"
        )
        if loops.per_s:
            print(
                f"\nduring training: throughput {100 * (trained.per_s / loops.per_s - 1):+.1f} %,"
                f" p50 {trained.p50_ms / loops.p50_ms:.2f}x, p99 {trained.p99_ms / loops.p99_ms:.2f}x (goal: at most 20 %)"
            )
    share = f", {100 * loops.per_s / floor['per_s']:.0f} % of the floor" if floor and floor["per_s"] else ""
    print(
        f"\nloops/s {loops.per_s:.1f}, p50 {loops.p50_ms:.0f} ms, p99 {loops.p99_ms:.0f} ms{share}"
        " (goal: >= 300 loops/s, p99 < 150 ms, >= 50 % of the floor on 2 cores)"
    )
    print_best_phase(args, runs, floor)
    print("\nverification against the database (all phases):")
    acked = [a for run in runs.values() for a in run.rec.acked]
    checks = checks_from(verify, acked)
    for check in checks:
        print(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    return all(check.ok for check in checks)


def vote_phases(runs: dict[str, Run]) -> list[Run]:
    return [run for name, run in runs.items() if name == "vote" or name.startswith("vote-")]


def print_best_phase(args, runs: dict[str, Run], floor: dict | None) -> None:
    """With several paces (--rates): the phase with the most loops/s whose p99 is under 150 ms,
    judged against the whole goal (the line above is the first phase's)."""
    phases = vote_phases(runs)
    if len(phases) < 2:
        return
    stats = [(run, window_stats(run.rec.loops, run.phase)) for run in phases]
    within = [(run, st) for run, st in stats if st.p99_ms < 150 and not sum(run.rec.errors.values())]
    if not within:
        print("no phase kept p99 under 150 ms without errors")
        return
    run, best = max(within, key=lambda pair: pair[1].per_s)
    offered = f"offered {args.annotators / run.think_s:.0f} loops/s" if run.think_s else "closed loop"
    of_floor = 100 * best.per_s / floor["per_s"] if floor and floor["per_s"] else 0.0
    met = best.per_s >= 300 and of_floor >= 50
    print(
        f"best phase under p99 150 ms: {offered}, {best.per_s:.1f} loops/s, p99 {best.p99_ms:.0f} ms,"
        f" {of_floor:.0f} % of the floor: goal {'met' if met else 'not met'}"
    )


def print_pace_table(args, runs: dict[str, Run], floor: dict | None, base: Stats | None) -> None:
    """One line per vote-loop phase: offered vs achieved loops/s and latency (the knee)."""
    phases = vote_phases(runs)
    print(
        f"\nload sweep, {args.annotators} annotators (offered = annotators / mean think time;"
        " achieved = loops finished in the window)"
    )
    print(
        f"  {'offered/s':>10}{'think ms':>10}{'achieved/s':>12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'% floor':>9}{'% 2-GET':>9}{'errors':>8}"
    )
    for run in phases:
        stats = window_stats(run.rec.loops, run.phase)
        offered = f"{args.annotators / run.think_s:.0f}" if run.think_s else "closed"
        of_floor = f"{100 * stats.per_s / floor['per_s']:.0f}" if floor and floor["per_s"] else "-"
        of_base = f"{100 * stats.per_s / base.per_s:.0f}" if base and base.per_s else "-"
        print(
            f"  {offered:>10}{1000 * run.think_s:>10.0f}{stats.per_s:>12.1f}{stats.p50_ms:>9.1f}"
            f"{stats.p95_ms:>9.1f}{stats.p99_ms:>9.1f}{of_floor:>9}{of_base:>9}"
            f"{sum(run.rec.errors.values()):>8}"
        )
        if not run.think_s and stats.per_s:
            print(
                f"  (closed loop: Little's law, {args.annotators} / {stats.per_s:.0f} loops/s ="
                f" {1000 * args.annotators / stats.per_s:.0f} ms mean time in the system per loop)"
            )
