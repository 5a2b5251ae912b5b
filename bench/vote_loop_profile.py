"""Server-side profile of the vote loop: next+vote through Django's test client, one process, PostgreSQL.

No network and no gunicorn: what is left is the view, DRF, the ORM and the database. Prints
SQL queries per request (with the statements of one loop), the time in the database against
the time in Python, and cProfile's top functions. Uses the same set-up as bench/vote_loop.py
(a fresh bench project in --database-url).

    .venv/bin/python bench/vote_loop_profile.py                # 500 loops
    .venv/bin/python bench/vote_loop_profile.py --loops 200 --sql   # and print every statement of one loop
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vote_loop  # a sibling script, not a package: imported after the sys.path line above


@dataclass
class DbTimer:
    """A connection.execute_wrapper that adds up the time spent inside the database driver."""

    seconds: float = 0.0
    queries: int = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.queries += 1


@dataclass(frozen=True)
class LoopTiming:
    loops: int
    seconds: float
    db_seconds: float
    queries: int
    python_cpu_s: float  # this process's CPU time: not inflated by other work on the machine
    postgres_cpu_s: float  # the server backend's CPU time, from /proc (same host only)


def backend_cpu_seconds() -> float:
    """CPU time (user + system) of this connection's PostgreSQL backend process."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("select pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


LOOP = "two"  # --loop: "one" votes with ?next=1 and keeps the next assignment per annotator
NEXT: dict[str, dict] = {}


def one_loop(client, project_id: int, headers: dict) -> None:
    if LOOP == "one":
        token = headers["HTTP_AUTHORIZATION"]
        if NEXT.get(token) is None:
            NEXT[token] = client.post(f"/api/projects/{project_id}/next/", {}, format="json", **headers).json()[
                "assignment"
            ]
        assignment = NEXT[token]
        body = {"choice": "a", "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 1000}
        response = client.post(
            f"/api/assignments/{assignment['assignment_id']}/vote/?next=1", body, format="json", **headers
        )
        assert response.status_code == 201, response.content
        NEXT[token] = response.json()["next"]["assignment"]
        return
    response = client.post(f"/api/projects/{project_id}/next/", {}, format="json", **headers)
    assignment = response.json()["assignment"]
    assert assignment is not None, response.json()
    body = {"choice": "a", "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 1000}
    response = client.post(f"/api/assignments/{assignment['assignment_id']}/vote/", body, format="json", **headers)
    assert response.status_code == 201, response.content


def queries_per_request(client, project_id: int, headers: dict, show_sql: bool) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as next_q:
        response = client.post(f"/api/projects/{project_id}/next/", {}, format="json", **headers)
    assignment_id = response.json()["assignment"]["assignment_id"]
    body = {"choice": "b", "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 1000}
    with CaptureQueriesContext(connection) as vote_q:
        client.post(f"/api/assignments/{assignment_id}/vote/", body, format="json", **headers)
    with CaptureQueriesContext(connection) as list_q:
        client.get("/api/projects/", **headers)
    print(f"SQL statements per request: next {len(next_q)}, vote {len(vote_q)}, GET /api/projects/ {len(list_q)}")
    if show_sql:
        for name, captured in (("next", next_q), ("vote", vote_q), ("GET /api/projects/", list_q)):
            print(f"\n-- {name}")
            for i, q in enumerate(captured.captured_queries, 1):
                print(f"{i:>3}. {q['time']}s  {q['sql'][:300]}")


def timed_loops(
    client, project_id: int, headers_list: list[dict], loops: int, profiler: cProfile.Profile | None
) -> LoopTiming:
    from django.db import connection

    timer = DbTimer()
    pg_before, cpu_before = backend_cpu_seconds(), time.process_time()
    with connection.execute_wrapper(timer):
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(loops):
            one_loop(client, project_id, headers_list[i % len(headers_list)])
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    return LoopTiming(loops, seconds, timer.seconds, timer.queries, cpu, backend_cpu_seconds() - pg_before)


AREAS = [  # first match wins: (label, substring of the file path)
    ("psycopg (incl. waiting on PostgreSQL)", "/psycopg"),
    ("django ORM: SQL compiler", "django/db/models/sql/"),
    ("django ORM: query/expressions/fields/models", "django/db/"),
    ("rest_framework", "/rest_framework/"),
    ("django test client (bench only)", "django/test/"),
    ("django other (handlers, middleware, http, utils)", "/django/"),
    ("annotate / rewards / frontend", "/work/main/"),
    ("stdlib and builtins", ""),
]


def print_self_time_by_area(stats: pstats.Stats) -> None:
    """Self time grouped by package: where the Python time goes, independent of call structure."""
    totals: dict[str, float] = {}
    for (path, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        label = next(label for label, needle in AREAS if needle in path)
        totals[label] = totals.get(label, 0.0) + tottime
    whole = sum(totals.values())
    print("\nself time by area (profiled run):")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds / whole:>6.1%}  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loops", type=int, default=500)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--comparisons", type=int, default=15_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", vote_loop.DEFAULT_DB))
    parser.add_argument("--sql", action="store_true", help="print every statement of one next and one vote")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--loop", choices=["one", "two"], default="one", help="one: vote?next=1; two: next + vote")
    args = parser.parse_args()
    global LOOP
    LOOP = args.loop

    setup = vote_loop.run_child(
        [
            "--child",
            "setup",
            "--database-url",
            args.database_url,
            "--annotators",
            str(args.annotators),
            "--comparisons",
            str(args.comparisons),
        ]
    )
    os.environ["DJANGO_DEBUG"] = "0"
    vote_loop.django_setup(args.database_url)
    from rest_framework.test import APIClient

    client = APIClient()
    headers_list = [{"HTTP_AUTHORIZATION": f"Token {t}"} for t in setup["tokens"]]
    project_id = setup["project_id"]
    queries_per_request(client, project_id, headers_list[0], args.sql)
    timed_loops(client, project_id, headers_list, 50, None)  # warm caches and connections

    plain = timed_loops(client, project_id, headers_list, args.loops, None)
    print(
        f"\n{plain.loops} loops without profiler: {plain.seconds / plain.loops * 1000:.2f} ms per loop "
        f"({plain.loops / plain.seconds:.0f} loops/s on one core), database driver {plain.db_seconds / plain.seconds:.0%} "
        f"of it ({plain.queries / plain.loops:.1f} statements, {plain.db_seconds / plain.queries * 1000:.3f} ms each)"
    )
    py_ms, pg_ms = (plain.python_cpu_s / plain.loops * 1000, plain.postgres_cpu_s / plain.loops * 1000)
    print(
        f"CPU per loop (load-independent): Django process {py_ms:.2f} ms + PostgreSQL backend {pg_ms:.2f} ms"
        f" = {py_ms + pg_ms:.2f} ms -> at most {2000 / (py_ms + pg_ms):.0f} loops/s on 2 cores before client and HTTP costs"
    )

    profiler = cProfile.Profile()
    timed_loops(client, project_id, headers_list, args.loops, profiler)
    stats = pstats.Stats(profiler)
    print(f"Python function calls per loop (deterministic, load-independent): {stats.total_calls / args.loops:,.0f}")
    print_self_time_by_area(stats)
    for sort in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_stats(args.top)
        print(f"\n== cProfile, sorted by {sort} ==")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])


if __name__ == "__main__":
    main()
