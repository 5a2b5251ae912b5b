"""Vote-loop benchmark: N concurrent simulated annotators voting against a real server on PostgreSQL.

One loop is what an annotator's client does per comparison. `--loop one` (the default): one
`POST /api/assignments/{id}/vote/?next=1`, whose answer carries the next assignment (each
annotator's first comes from one `POST /api/projects/{id}/next/`). `--loop two`: next, then vote.
Each vote has a fresh idempotency key and a random allowed choice. The script sets up a bench
project (overlap 3, lease 600 s, enough comparisons that nobody runs dry), starts the server on a
free loopback port, and runs the annotators with asyncio + aiohttp, in phases:

0. the floor (`--floor-duration`, or `--floor` alone): the engine's own statements (prepared,
   the same locking, texts imported from the services) from a tight client with
   `--floor-connections` connections (default 16: on 2 cores it peaks at 16-32, 543 loops/s at
   4, 660 at 8, 778 at 16, 766 at 32, 508 at 64 on 2026-12-03) on the same database
   (bench/vote_loop_floor.py); the set-up VACUUM ANALYZEs the tables first;
1. the vote loop (`--duration` after `--warmup`);
2. the baseline: two trivial GETs per loop (`--baseline health`: GET /healthz/; `projects`:
   an authenticated DRF list), so the loop's cost reads as a ratio on any machine;
3. with `--training-duration S`: the vote loop again while a reward-model training run
   (`manage.py train_reward_model`, MiniLM on CPU at idle priority, `--training-priority`) works on the same cores; the
   report gives the slowdown against phase 1 (goal: at most 20 %).

`--think-ms MEAN`, `--rate R` or `--rates R1,R2,..` add an exponential think time before each
vote (mean MEAN, or annotators / R: R loops/s offered), so latency is measured at an offered load
(docs/vote-loop.md: with no think time Little's law fixes it at annotators / throughput).

It prints loops/s with p50/p95/p99, CPU per loop by role, the share of the floor and the ratio to
the baseline, then checks against the database that every acknowledged 201 is exactly one stored
vote and that no comparison went past its overlap target (non-zero exit when a check fails).
Goal: >= 300 loops/s at 200 annotators, p99 < 150 ms, >= 50 % of the floor on 2 cores (client and
server on the same cores); no test asserts a time.

Servers: `--server uvicorn` (the production profile's ASGI server, `--workers` processes) or
`--server gunicorn` (sync workers, or gthread with `--threads`). `--production` serves
`prefloop.settings.production` (PostgreSQL pool, Redis for cache and channels, HTTPS behind a
proxy: the client sends X-Forwarded-Proto like the proxy would) with a throwaway secret key;
without it the embedded settings run with DJANGO_DEBUG=0. `--no-fast-path` serves with
PREFLOOP_FAST_PATH=0 (every request through the DRF views).

    B=".venv/bin/python bench/vote_loop.py --database-url postgres://postgres@127.0.0.1:5432/prefloop_bench"
    $B --floor                                                   # the floor alone
    $B --server gunicorn --workers 3 --annotators 50             # about a minute each
    $B --server gunicorn --workers 3 --annotators 200
    $B --server uvicorn --workers 2 --annotators 200 --production   # Redis at BENCH_REDIS_URL; the pool
    $B --server gunicorn --workers 3 --annotators 200 --loop two --no-fast-path   # the old request path
    $B --server gunicorn --workers 3 --annotators 50 --training-duration 20       # while a model trains
    $B --server gunicorn --workers 3 --annotators 200 --rate 300                  # think time: 300 loops/s offered
    $B --server gunicorn --workers 3 --annotators 200 --rates 100,200,300,400 --duration 10   # the knee
    .venv/bin/python bench/vote_loop.py --url http://127.0.0.1:8000   # a server already running on --database-url

Django (set-up, floor, training and verification) runs in child processes so the client process
stays light: it imports only asyncio and aiohttp. Look at the load average printed first: the
figures mean something only when nothing else ran on the cores; the CPU per loop by role does not
depend on other load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vote_loop_report import BASELINES, REQUESTS_PER_LOOP, print_floor, report

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # prefloop.loopback, when run as `python bench/vote_loop.py`
    sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/prefloop_bench"
PROJECT_PREFIX = "bench-vote-loop"
USER_PREFIX = "bench-annotator-"
FLOOR_USER_PREFIX = "bench-floor-"  # the floor's own annotators: their votes are not the HTTP client's
FLOOR_USERS = 64
OVERLAP = 3
LEASE_SECONDS = 600
REQUEST_TIMEOUT_S = 30.0
MODELS = [f"model-{i}" for i in range(8)]


# --- Django side (child processes) ------------------------------------------------------------


def django_setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def ensure_database(database_url: str) -> None:
    import psycopg

    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def drop_old_projects() -> None:
    """Remove earlier bench projects with set-based deletes (the ORM's cascade would walk rows in Python)."""
    from django.db import connection, transaction

    from annotate.models import Project

    ids = list(Project.objects.filter(name__startswith=PROJECT_PREFIX).values_list("id", flat=True))
    if not ids:
        return
    statements = [
        "delete from annotate_vote where comparison_id in (select id from annotate_comparison where project_id = any(%s))",
        "delete from annotate_assignment where project_id = any(%s)",
        "delete from annotate_comparisonitem where comparison_id in (select id from annotate_comparison where project_id = any(%s))",
        "delete from annotate_comparison where project_id = any(%s)",
        "delete from annotate_completion where prompt_id in (select id from annotate_prompt where project_id = any(%s))",
        "delete from annotate_prompt where project_id = any(%s)",
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql, [ids])
    Project.objects.filter(pk__in=ids).delete()


def copy_comparisons(project_id: int, count: int) -> None:
    """`count` two-way comparisons (fresh prompt, two completions each) via COPY."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "select (select coalesce(max(id), 0) from annotate_prompt), (select coalesce(max(id), 0) from annotate_completion),"
            " (select coalesce(max(id), 0) from annotate_comparison)"
        )
        p0, c0, k0 = cursor.fetchone()
    now = "2026-01-01 00:00:00+00"
    filler = "The answer explains the idea step by step with an example and a short summary. " * 5
    raw = connection.connection

    def copy(table: str, columns: str, rows) -> None:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as pipe:
            for row in rows:
                pipe.write_row(row)

    copy(
        "annotate_prompt",
        "id, project_id, key, text, category, metadata, messages, created_at",
        (
            (
                p0 + i + 1,
                project_id,
                f"q{i}",
                f"Bench question {i}: explain topic {i % 977} briefly.",
                "bench",
                "{}",
                "[]",
                now,
            )
            for i in range(count)
        ),
    )
    copy(
        "annotate_completion",
        "id, prompt_id, key, text, text_available, source, model_name, sampler_params, metadata, created_at",
        (
            (
                c0 + 2 * i + j + 1,
                p0 + i + 1,
                f"c{j}",
                f"Answer {j} to question {i}. {filler}",
                True,
                "external",
                MODELS[(i + j) % len(MODELS)],
                "{}",
                "{}",
                now,
            )
            for i in range(count)
            for j in range(2)
        ),
    )
    copy(
        "annotate_comparison",
        "id, project_id, prompt_id, key, round, priority, is_open, imported_votes, votes_done, leases_open,"
        " is_complete, gold_label, created_at",
        (
            (
                k0 + i + 1,
                project_id,
                p0 + i + 1,
                f"{c0 + 2 * i + 1}-{c0 + 2 * i + 2}",
                0,
                0,
                True,
                0,
                0,
                0,
                False,
                "",
                now,
            )
            for i in range(count)
        ),
    )
    copy(
        "annotate_comparisonitem",
        "comparison_id, completion_id, position",
        ((k0 + i + 1, c0 + 2 * i + j + 1, j) for i in range(count) for j in range(2)),
    )
    with connection.cursor() as cursor:  # planner statistics: vacuum_analyze, after the set-up
        for table in ("annotate_prompt", "annotate_completion", "annotate_comparison", "annotate_comparisonitem"):
            cursor.execute(f"select setval(pg_get_serial_sequence('{table}', 'id'), (select max(id) from {table}))")


LOOP_TABLES = (
    "annotate_vote",
    "annotate_assignment",
    "annotate_comparisonitem",
    "annotate_comparison",
    "annotate_completion",
    "annotate_prompt",
    "annotate_membership",
    "annotate_project",
)


def vacuum_analyze() -> None:
    """VACUUM ANALYZE the loop's tables after the set-up, as autovacuum would in a live database:
    earlier runs' deleted rows otherwise stay in the tables and indexes (a server started with
    autovacuum off, as on the bench machines, never removes them) and every run is slower than the
    last. The floor and the loop both run on the vacuumed tables."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in LOOP_TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")


def bench_tokens(project, annotators: int, prefix: str = USER_PREFIX) -> list[str]:
    """N annotator users (no password: token only), their memberships and tokens."""
    from rest_framework.authtoken.models import Token

    from annotate.models import User
    from annotate.services.projects import membership_set

    names = [f"{prefix}{i:03d}" for i in range(annotators)]
    fresh = [User(username=n, role=User.Role.ANNOTATOR) for n in names]
    for user in fresh:
        user.set_unusable_password()
    User.objects.bulk_create(fresh, ignore_conflicts=True)
    tokens = []
    for user in User.objects.filter(username__in=names).order_by("username"):
        membership_set(project=project, user=user)
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return tokens


def child_setup(database_url: str, annotators: int, comparisons: int) -> dict:
    ensure_database(database_url)
    django_setup(database_url)
    from django.core.management import call_command

    from annotate.services.projects import project_create

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    drop_old_projects()
    project = project_create(
        name=f"{PROJECT_PREFIX}-{int(time.time())}", overlap_target=OVERLAP, lease_seconds=LEASE_SECONDS
    )
    copy_comparisons(project.pk, comparisons)
    tokens = bench_tokens(project, annotators)
    bench_tokens(project, FLOOR_USERS, FLOOR_USER_PREFIX)
    vacuum_analyze()
    usernames = [f"{FLOOR_USER_PREFIX}{i:03d}" for i in range(FLOOR_USERS)]
    return {
        "project_id": project.pk,
        "tokens": tokens,
        "usernames": usernames,
        "seconds": time.perf_counter() - started,
    }


def child_verify(database_url: str, project_id: int, log_path: str) -> dict:
    """Compare the client's acknowledged votes with the database; check the overlap invariant."""
    django_setup(database_url)
    from django.db import connection

    acked = {json.loads(line)["key"] for line in Path(log_path).read_text().splitlines() if line.strip()}
    with connection.cursor() as cursor:
        cursor.execute(
            "select v.idempotency_key from annotate_vote v join annotate_comparison c on c.id = v.comparison_id"
            " join annotate_user u on u.id = v.annotator_id where c.project_id = %s and u.username like %s",
            [project_id, USER_PREFIX + "%"],
        )
        stored = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            select count(*) filter (where c.imported_votes + c.votes_done + c.leases_open > p.overlap_target),
                   count(*) filter (where coalesce(v.n, 0) + coalesce(a.n, 0) > p.overlap_target),
                   count(*) filter (where coalesce(v.n, 0) <> c.votes_done or coalesce(a.n, 0) <> c.leases_open)
            from annotate_comparison c
            join annotate_project p on p.id = c.project_id
            left join (select comparison_id, count(*) n from annotate_vote group by comparison_id) v on v.comparison_id = c.id
            left join (select comparison_id, count(*) n from annotate_assignment where state = 'leased'
                       group by comparison_id) a on a.comparison_id = c.id
            where c.project_id = %s
            """,
            [project_id],
        )
        over_counter, over_rows, counter_drift = cursor.fetchone()
    stored_set = set(stored)
    return {
        "acked": len(acked),
        "stored": len(stored),
        "stored_distinct": len(stored_set),
        "acked_not_stored": len(acked - stored_set),
        "stored_not_acked": len(stored_set - acked),
        "over_target_by_counters": over_counter,
        "over_target_by_rows": over_rows,
        "counter_drift": counter_drift,
    }


def start_training(env: dict, project_id: int, log, priority: str) -> subprocess.Popen:
    """A reward-model training run on the bench project's votes, as a job worker on the web machine
    would run it (docs/operations.md), stopped after the phase. priority: "idle", the product's
    default (PREFLOOP_TRAINING_PRIORITY, prefloop/jobs/priority.py); "normal"; "nice19": normal
    policy under `nice -n 19`, the set-up before SCHED_IDLE."""
    command = [
        sys.executable,
        str(ROOT / "manage.py"),
        "train_reward_model",
        "--project",
        str(project_id),
        "--epochs",
        "50",
        "--max-steps",
        "100000",
        "--eval-every",
        "100000",
        "--max-length",
        "128",
        "--batch-size",
        "8",
    ]
    if priority == "nice19":
        command = ["nice", "-n", "19", *command]
    env = dict(env, PREFLOOP_TRAINING_PRIORITY="idle" if priority == "idle" else "normal")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)


def training_started(log) -> bool:
    """True once the run is past loading (its first log lines) — or it already failed."""
    log.flush()
    log.seek(0)
    return bool(log.read().strip())


def run_child(argv: list[str]) -> dict:
    """Run a `--child` mode of this script in a fresh interpreter; return its RESULT json."""
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, cwd=ROOT, timeout=900)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"child {argv[:2]} failed:\n{(proc.stderr or proc.stdout)[-2000:]}")
    return json.loads(line[len("RESULT ") :])


# --- server -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    server: str  # uvicorn | gunicorn
    workers: int
    worker_class: str  # gunicorn: sync | gthread
    threads: int
    production: bool

    @property
    def settings(self) -> str:
        return "prefloop.settings.production" if self.production else "prefloop.settings"

    def describe(self) -> str:
        if self.server == "uvicorn":
            kind = f"uvicorn {self.workers} workers (ASGI, uvloop + httptools)"
        else:
            threads = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
            kind = f"gunicorn {self.workers} {self.worker_class} workers{threads} (WSGI)"
        return f"{kind}, settings {self.settings}" + ("" if self.production else " with DJANGO_DEBUG=0")


def server_env(config: ServerConfig | None, database_url: str) -> dict:
    """Environment of the server and of the training child: the same settings module for both."""
    import secrets

    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_DEBUG": "0", "PYTHONUNBUFFERED": "1"}
    if config is None or not config.production:
        env["DJANGO_SETTINGS_MODULE"] = "prefloop.settings"
        if config is not None and config.server == "uvicorn":
            # Without the production profile's pool, persistent connections under ASGI pile up
            # (one per request context) until PostgreSQL refuses clients: close them per request.
            env["DB_CONN_MAX_AGE"] = "0"
        return env
    env.update(
        DJANGO_SETTINGS_MODULE="prefloop.settings.production",
        DJANGO_SECRET_KEY=os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
        PREFLOOP_CACHE_PREFIX="bench-vote-loop",
        PREFLOOP_CHANNELS_PREFIX="bench-vote-loop",
        PREFLOOP_JOB_BACKEND="db",
        LOG_LEVEL="WARNING",
    )
    return env


def free_port() -> int:
    """A free loopback port: from BENCH_PORTS ("first-last", for machines shared by several people) or any."""
    from prefloop.loopback import free_port as loopback_port

    first, _, last = os.environ.get("BENCH_PORTS", "0-0").partition("-")
    return loopback_port(range(int(first), int(last or first) + 1) if int(first) else ())


def start_server(config: ServerConfig, env: dict, port: int, log) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    from prefloop.loopback import start_process, uvicorn_command

    if config.server == "uvicorn":
        command = uvicorn_command(
            port,
            workers=config.workers,
            extra=["--no-access-log", "--log-level", "warning", "--backlog", "2048", "--no-server-header"],
        )
    else:
        command = [
            str(bin_dir / "gunicorn"),
            "prefloop.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(config.workers),
            "--worker-class",
            config.worker_class,
            "--backlog",
            "2048",
            "--log-level",
            "warning",
            "--keep-alive",
            "5",
        ]
        if config.worker_class == "gthread":
            command += ["--threads", str(config.threads)]
    # Its own session, so stop_server can end the server and its workers by this one group id.
    return start_process(command, env=env, log=log)


def stop_server(proc: subprocess.Popen) -> None:
    from prefloop.loopback import stop_process_group

    stop_process_group(proc)


def wait_until_up(url: str, proc: subprocess.Popen | None, timeout_s: float = 30.0) -> None:
    """Poll until the server answers any HTTP status (401 without a token is fine; no redirect is followed)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            conn.request("GET", "/api/projects/", headers={"X-Forwarded-Proto": "https"})
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not answer within {timeout_s:.0f} s")


# --- client -----------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Everything the annotators observed. Samples are (start, seconds); the report keeps the window."""

    requests: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    loops: list[tuple[float, float]] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    no_work: Counter = field(default_factory=Counter)
    acked: list[dict] = field(default_factory=list)
    # CPU seconds used inside the measuring window: {"server": .., "postgres": .., "client": ..}
    cpu: dict[str, float] = field(default_factory=dict)

    def request(self, kind: str, start: float, seconds: float, status: int | str, ok: tuple[int, ...]) -> None:
        self.requests.setdefault(kind, []).append((start, seconds))
        if status not in ok:
            self.errors[f"{kind} {status}"] += 1


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # monotonic: when measuring starts (after the warm-up)
    end: float  # no loop starts after this


async def call(session, method: str, url: str, headers: dict, payload: dict | None) -> tuple[int | str, dict | None]:
    try:
        async with session.request(method, url, json=payload, headers=headers) as response:
            body = await response.json(content_type=None) if response.status < 500 else None
            return response.status, body
    except TimeoutError:
        return "timeout", None
    except Exception as exc:  # noqa: BLE001 — connection reset, bad JSON: counted, never fatal
        return type(exc).__name__, None


async def vote_loop(
    session, base: str, project_id: int, headers: dict, rng: random.Random, rec: Recorder, state: dict
) -> None:
    """Two requests per loop: POST next, then POST vote."""
    t0 = time.monotonic()
    status, body = await call(session, "POST", f"{base}/api/projects/{project_id}/next/", headers, {})
    next_s = time.monotonic() - t0
    rec.request("next", t0, next_s, status, (200,))
    if status != 200:
        return
    assignment = body["assignment"]
    if assignment is None:
        rec.no_work[body["reason"]] += 1
        await asyncio.sleep(0.1)
        return
    key = str(uuid.uuid4())
    vote = {"choice": rng.choice(assignment["choices"]), "idempotency_key": key, "time_spent_ms": 1000}
    await think(rng, state)
    t1 = time.monotonic()
    status, body = await call(
        session, "POST", f"{base}/api/assignments/{assignment['assignment_id']}/vote/", headers, vote
    )
    t2 = time.monotonic()
    rec.request("vote", t1, t2 - t1, status, (201,))
    if status == 201:
        rec.acked.append({"key": key, "assignment_id": assignment["assignment_id"]})
        rec.loops.append((t1, next_s + t2 - t1))


async def think(rng: random.Random, state: dict) -> None:
    """The annotator reads the comparison before voting: an exponential pause of mean
    state["think_s"] (none in the closed loop, think_s 0)."""
    mean = state.get("think_s", 0.0)
    if mean > 0:
        await asyncio.sleep(rng.expovariate(1.0 / mean))


async def one_request_loop(
    session, base: str, project_id: int, headers: dict, rng: random.Random, rec: Recorder, state: dict
) -> None:
    """One request per loop: POST vote?next=1, whose answer carries the next assignment (the first
    assignment of each annotator comes from one POST next, not counted as a loop)."""
    if state.get("next") is None:
        t0 = time.monotonic()
        status, body = await call(session, "POST", f"{base}/api/projects/{project_id}/next/", headers, {})
        rec.request("next", t0, time.monotonic() - t0, status, (200,))
        if status != 200:
            return
        state["next"] = body
    answer, state["next"] = state["next"], None
    assignment = answer["assignment"]
    if assignment is None:
        rec.no_work[answer["reason"]] += 1
        await asyncio.sleep(0.1)
        return
    key = str(uuid.uuid4())
    vote = {"choice": rng.choice(assignment["choices"]), "idempotency_key": key, "time_spent_ms": 1000}
    await think(rng, state)
    t0 = time.monotonic()
    status, body = await call(
        session, "POST", f"{base}/api/assignments/{assignment['assignment_id']}/vote/?next=1", headers, vote
    )
    t1 = time.monotonic()
    rec.request("vote+next", t0, t1 - t0, status, (201,))
    if status == 201:
        rec.acked.append({"key": key, "assignment_id": assignment["assignment_id"]})
        rec.loops.append((t0, t1 - t0))
        state["next"] = body["next"]


async def baseline_loop(
    session, base: str, project_id: int, headers: dict, rng: random.Random, rec: Recorder, state: dict
) -> None:
    """The same shape (two requests) against a trivial endpoint (BASELINE_PATH)."""
    t0 = time.monotonic()
    for kind in ("get-1", "get-2"):
        start = time.monotonic()
        status, _ = await call(session, "GET", f"{base}{BASELINE_PATH}", headers, None)
        rec.request(kind, start, time.monotonic() - start, status, (200,))
        if status != 200:
            return
    rec.loops.append((t0, time.monotonic() - t0))


async def annotator(
    loop_fn,
    session,
    base: str,
    project_id: int,
    token: str,
    phase: Phase,
    seed: int,
    rec: Recorder,
    max_loops: int,
    think_s: float = 0.0,
) -> None:
    # What the TLS proxy in front of the production profile adds; harmless otherwise.
    headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"}
    rng = random.Random(seed)
    state: dict = {"think_s": think_s}
    for _ in range(max_loops):
        if time.monotonic() >= phase.end:
            return
        await loop_fn(session, base, project_id, headers, rng, rec, state)


async def run_phase(
    loop_fn,
    base: str,
    project_id: int,
    tokens: list[str],
    warmup: float,
    duration: float,
    max_loops: int,
    name: str,
    think_s: float = 0.0,
) -> tuple[Recorder, Phase]:
    import aiohttp

    rec = Recorder()
    start = time.monotonic() + warmup
    phase = Phase(name, start, start + duration)
    connector = aiohttp.TCPConnector(limit=len(tokens) + 8)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    per_annotator = max(1, max_loops // len(tokens))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            annotator(loop_fn, session, base, project_id, token, phase, i, rec, per_annotator, think_s)
            for i, token in enumerate(tokens)
        ]
        # Bounded even if the server hangs: the warm-up, the window, one request timeout per step.
        await asyncio.wait_for(
            asyncio.gather(measure_cpu(phase, rec), *tasks), timeout=warmup + duration + 3 * REQUEST_TIMEOUT_S
        )
    return rec, phase


SERVER_PID: int | None = None  # set by main when it starts the server
BASELINE_PATH = "/healthz/"  # set by main from --baseline
DATABASE_NAME = ""


def process_table() -> list[tuple[int, int, str, float]]:
    """(pid, ppid, command line, CPU seconds) of every process, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    table = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        table.append((int(entry.name), int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / tick))
    return table


def cpu_by_role() -> dict[str, dict[int, float]]:
    """CPU seconds so far, per process, of the server (supervisor + workers), the bench database's
    PostgreSQL backends, and this client process; differences over a window give CPU per loop."""
    table = process_table()
    server, children = set(), {}
    for pid, ppid, _, _ in table:
        children.setdefault(ppid, []).append(pid)
    stack = [SERVER_PID] if SERVER_PID else []
    while stack:
        pid = stack.pop()
        server.add(pid)
        stack.extend(children.get(pid, []))
    times = os.times()
    return {
        "server": {pid: cpu for pid, _, _, cpu in table if pid in server},
        "postgres": {
            pid: cpu for pid, _, cmd, cpu in table if cmd.startswith("postgres: ") and f" {DATABASE_NAME} " in cmd
        },
        "client": {os.getpid(): times.user + times.system},
    }


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings by the processes alive at the second (a backend that
    closed in the window takes its seconds with it: an undercount, never a negative figure)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


async def measure_cpu(phase: Phase, rec: Recorder) -> None:
    await asyncio.sleep(max(0.0, phase.start - time.monotonic()))
    before = cpu_by_role()
    await asyncio.sleep(max(0.0, phase.end - time.monotonic()))
    after = cpu_by_role()
    rec.cpu = {role: cpu_delta(before[role], after[role]) for role in before}


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds of each vote-loop phase")
    parser.add_argument("--warmup", type=float, default=3.0)
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean think time (exponential) between receiving a comparison and voting (0: closed loop)",
    )
    pace.add_argument(
        "--rate", type=float, help="offered loops/s over all annotators: think time of mean annotators / rate"
    )
    pace.add_argument(
        "--rates", help="a sweep: comma-separated offered loops/s (e.g. 100,200,300,400), one line per rate"
    )
    parser.add_argument(
        "--loop",
        choices=["one", "two"],
        default="one",
        help="one: POST vote?next=1 per loop (the default); two: POST next + POST vote",
    )
    parser.add_argument(
        "--no-fast-path",
        action="store_true",
        help="serve with PREFLOOP_FAST_PATH=0: DRF views for every request (the 'before' figures)",
    )
    parser.add_argument("--floor", action="store_true", help="measure only the floor (no server)")
    parser.add_argument(
        "--floor-duration", type=float, default=10.0, help="measured seconds of the floor phase (0: skip)"
    )
    parser.add_argument(
        "--floor-connections",
        type=int,
        default=16,
        choices=range(1, FLOOR_USERS + 1),
        metavar="N",
        help=f"tight-client connections of the floor (1 to {FLOOR_USERS})",
    )
    parser.add_argument("--baseline", choices=sorted(BASELINES), default="health", help="the two trivial GETs")
    parser.add_argument(
        "--baseline-duration", type=float, default=10.0, help="measured seconds of the baseline (0: skip)"
    )
    parser.add_argument(
        "--training-duration",
        type=float,
        default=0.0,
        help="measured seconds of the vote loop while a reward model trains (0: skip, the default)",
    )
    parser.add_argument(
        "--training-warmup",
        type=float,
        default=25.0,
        help="seconds between starting the training run and measuring (model loading)",
    )
    parser.add_argument(
        "--training-priority",
        choices=["idle", "normal", "nice19"],
        default="idle",
        help="CPU priority of the training run: idle (SCHED_IDLE, the product's default), normal, or nice 19",
    )
    parser.add_argument("--comparisons", type=int, default=30_000, help="comparisons in the bench project (x3 slots)")
    parser.add_argument("--server", choices=["uvicorn", "gunicorn"], default="uvicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync", help="gunicorn only")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument(
        "--production",
        action="store_true",
        help="serve prefloop.settings.production (needs Redis at BENCH_REDIS_URL, default redis://127.0.0.1:6379/7)",
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--url", help="an already running server using --database-url; no server is started")
    parser.add_argument("--log", default=None, help="client log of acknowledged votes (JSONL; default: a temp file)")
    parser.add_argument("--child", choices=["setup", "verify", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--usernames", help=argparse.SUPPRESS)
    parser.add_argument("--project-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        args.paces = paces_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


MAX_RATES = 8  # phases in one sweep (each --warmup + --duration)


def paces_from(args: argparse.Namespace) -> list[float]:
    """Mean think seconds of each vote-loop phase ([0.0]: the closed loop, no think time)."""
    if args.rates is not None:
        try:
            rates = [float(r) for r in args.rates.split(",") if r.strip()]
        except ValueError:
            raise ValueError(f"--rates: numbers separated by commas, not {args.rates!r}") from None
        if not rates or len(rates) > MAX_RATES:
            raise ValueError(f"--rates: 1 to {MAX_RATES} rates")
    elif args.rate is not None:
        rates = [args.rate]
    else:
        if not 0 <= args.think_ms <= 600_000:
            raise ValueError("--think-ms: 0 to 600000")
        return [args.think_ms / 1000]
    if any(not 0 < r <= 100_000 for r in rates):
        raise ValueError("--rate/--rates: each above 0 and at most 100000 loops/s")
    return [args.annotators / r for r in rates]


def child_main(args: argparse.Namespace) -> None:
    if args.child == "setup":
        result = child_setup(args.database_url, args.annotators, args.comparisons)
    elif args.child == "floor":
        django_setup(args.database_url)
        from vote_loop_floor import floor_run

        result = floor_run(args.database_url, args.project_id, args.usernames.split(","), 1.0, args.floor_duration)
    else:
        result = child_verify(args.database_url, args.project_id, args.log)
    print("RESULT " + json.dumps(result))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """What one vote-loop phase observed."""

    rec: Recorder
    phase: Phase
    training_cpu_s: float | None = None
    training_alive: bool | None = None
    think_s: float = 0.0  # mean think time of a vote-loop phase (0: closed loop)


def vote_phase(
    args, base: str, setup: dict, duration: float, max_loops: int, think_s: float = 0.0
) -> tuple[Recorder, Phase]:
    loop_fn = one_request_loop if args.loop == "one" else vote_loop
    return asyncio.run(
        run_phase(
            loop_fn, base, setup["project_id"], setup["tokens"], args.warmup, duration, max_loops, "vote", think_s
        )
    )


def floor_phase(args, setup: dict) -> dict:
    """The floor in a child process, as the floor's own annotators (bench-floor-*)."""
    names = setup["usernames"][: args.floor_connections]
    return run_child(
        [
            "--child",
            "floor",
            "--database-url",
            args.database_url,
            "--project-id",
            str(setup["project_id"]),
            "--usernames",
            ",".join(names),
            "--floor-duration",
            str(args.floor_duration),
        ]
    )


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    global SERVER_PID, DATABASE_NAME, BASELINE_PATH
    args = parse_args()
    if args.child:
        child_main(args)
        return 0
    BASELINE_PATH = BASELINES[args.baseline][1]
    REQUESTS_PER_LOOP["vote"] = 1 if args.loop == "one" else 2
    signal.signal(signal.SIGTERM, interrupt)  # a killed run still stops its server
    config = (
        None if args.url else ServerConfig(args.server, args.workers, args.worker_class, args.threads, args.production)
    )
    args.load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    print(f"load average at start: {args.load_before}", flush=True)
    print(
        f"set-up: {args.comparisons:,} comparisons, {args.annotators} annotators in {args.database_url} ...", flush=True
    )
    setup = run_child(
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
    print(f"set-up done in {setup['seconds']:.1f} s (project {setup['project_id']})", flush=True)
    if args.floor or args.floor_duration > 0:
        print(f"floor: {args.floor_connections} connections, {args.floor_duration:.0f} s ...", flush=True)
        args.floor_result = floor_phase(args, setup)
        if args.floor:
            print_floor(args.floor_result)
            return 0
    log_path = Path(args.log or tempfile.mkstemp(prefix="vote-loop-acks-", suffix=".jsonl")[1])
    env = server_env(config, args.database_url)
    if args.no_fast_path:
        env["PREFLOOP_FAST_PATH"] = "0"
    proc, server_log = None, tempfile.TemporaryFile(mode="w+")
    training, training_log = None, tempfile.TemporaryFile(mode="w+")
    runs: dict[str, Run] = {}
    slots = args.comparisons * OVERLAP
    try:
        base = args.url.rstrip("/") if args.url else None
        if config:
            port = free_port()
            proc = start_server(config, env, port, server_log)
            base = f"http://127.0.0.1:{port}"
            SERVER_PID = proc.pid
        DATABASE_NAME = args.database_url.rsplit("/", 1)[-1]
        wait_until_up(base, proc)
        print(f"server up at {base}; {args.warmup:.0f} s warm-up, {args.duration:.0f} s measured ...", flush=True)
        for i, think_s in enumerate(args.paces):
            if think_s:
                print(
                    f"  offered {args.annotators / think_s:.0f} loops/s (mean think {1000 * think_s:.0f} ms) ...",
                    flush=True,
                )
            run = Run(*vote_phase(args, base, setup, args.duration, slots, think_s))
            run.think_s = think_s
            runs["vote" if i == 0 else f"vote-{i}"] = run
        if args.baseline_duration > 0:
            print("baseline ...", flush=True)
            runs["baseline"] = Run(
                *asyncio.run(
                    run_phase(
                        baseline_loop,
                        base,
                        setup["project_id"],
                        setup["tokens"],
                        1.0,
                        args.baseline_duration,
                        10**6,
                        "baseline",
                    )
                )
            )
        if args.training_duration > 0:
            print(f"starting a reward-model training run; {args.training_warmup:.0f} s to load ...", flush=True)
            training = start_training(env, setup["project_id"], training_log, args.training_priority)
            time.sleep(args.training_warmup)
            if training.poll() is not None:
                training_log.seek(0)
                raise RuntimeError(f"training ended early ({training.returncode}):\n{training_log.read()[-2000:]}")
            cpu_before = cpu_seconds(training.pid)
            run = Run(*vote_phase(args, base, setup, args.training_duration, slots, args.paces[0]))
            run.training_cpu_s = cpu_seconds(training.pid) - cpu_before
            run.training_alive = training.poll() is None
            runs["training"] = run
    except BaseException:
        server_log.seek(0)
        tail = server_log.read()[-2000:]
        if tail:
            print("server log tail:\n" + tail, file=sys.stderr)
        raise
    finally:
        if training is not None:
            stop_server(training)
        if proc is not None:
            stop_server(proc)
    log_path.write_text("".join(json.dumps(a) + "\n" for run in runs.values() for a in run.rec.acked))
    verify = run_child(
        [
            "--child",
            "verify",
            "--database-url",
            args.database_url,
            "--project-id",
            str(setup["project_id"]),
            "--log",
            str(log_path),
        ]
    )
    ok = report(args, config, runs, verify)
    print(f"client log: {log_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
